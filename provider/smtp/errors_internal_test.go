package smtp

import (
	"context"
	"errors"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"

	"github.com/crmsync/crmsync"
	"github.com/crmsync/crmsync/provider"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		err      error
		dataSent bool
		want     crmsync.Kind
	}{
		{&smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}}, false, crmsync.KindAuth},
		{&smtp.SMTPError{Code: 534, EnhancedCode: smtp.EnhancedCode{5, 7, 9}}, false, crmsync.KindAuth},
		{&smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}}, false, crmsync.KindAuth},
		{&smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}}, false, crmsync.KindTransient},
		{&smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many connections"}, false, crmsync.KindThrottled},
		{&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "rate limit exceeded"}, true, crmsync.KindThrottled},
		{&smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 28}, Message: "slow down"}, false, crmsync.KindThrottled},
		{&smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy"}, false, crmsync.KindTransient},
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}}, false, crmsync.KindPermanent},
		{&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "content rejected"}, true, crmsync.KindPermanent},
		{&smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}}, true, crmsync.KindPermanent},
		{errors.New("connection reset"), true, crmsync.KindTransient},
		{errors.New("broken pipe"), false, crmsync.KindTransient},
	}
	for _, tc := range cases {
		got := crmsync.KindOf(classify("smtp send", tc.err, tc.dataSent))
		assert.Equal(t, tc.want, got, "%v", tc.err)
	}
	assert.Contains(t, classify("smtp send", errors.New("EOF"), true).Error(), "outcome unknown")
	assert.NotContains(t, classify("smtp send", errors.New("EOF"), false).Error(), "outcome unknown")
}

func TestNotSubmitted(t *testing.T) {
	cause := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
	err := notSubmitted(classify("smtp send", cause, false))
	assert.ErrorIs(t, err, ErrNotSubmitted)
	assert.ErrorIs(t, err, provider.ErrNotSubmitted, "the sentinel the engine tests for")
	assert.Equal(t, crmsync.KindPermanent, crmsync.KindOf(err))
	var se *smtp.SMTPError
	assert.ErrorAs(t, err, &se, "the cause stays in the chain")
	var ce *crmsync.Error
	if assert.ErrorAs(t, err, &ce) {
		assert.Equal(t, "smtp send", ce.Op)
	}
	assert.Equal(t, "smtp send: permanent: SMTP error 550: No such user (the message was not submitted)", err.Error())
	assert.Same(t, err, notSubmitted(err), "marked once")
	assert.Nil(t, notSubmitted(nil))

	canceled := notSubmitted(context.Canceled)
	assert.ErrorIs(t, canceled, context.Canceled)
	assert.ErrorIs(t, canceled, ErrNotSubmitted)
}
