package imap

import (
	"context"
	"errors"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/crmsync/crmsync/provider"
)

// MoveToFolder moves the message that ref names (ref.ID is the email's ProviderID) to
// folder, creating the folder if it does not exist. An empty folder, or
// "Undeliverable", means Config.UndeliverableFolder. It uses UID MOVE, or where the
// server lacks MOVE, UID COPY, then \Deleted and UID EXPUNGE of that message only (on a
// server without UIDPLUS the original is left flagged \Deleted rather than expunging
// other messages). A message that is gone, or whose folder was recreated since it was
// fetched (a new UIDVALIDITY), is a not-found error.
func (c *Conn) MoveToFolder(ctx context.Context, ref provider.ItemRef, folder string) error {
	const op = "imap move"
	src, validity, uid, err := parseProviderID(ref.ID)
	if err != nil {
		// Not an id this provider gave out, so no such message here.
		return provider.NotFound(op, err)
	}
	dest := folder
	if dest == "" || dest == DefaultUndeliverableFolder {
		dest = c.d.cfg.UndeliverableFolder
	}
	if dest == src {
		return nil
	}
	return c.withIMAP(ctx, op, func(cl *imapclient.Client) error {
		sel, err := cl.Select(src, nil).Wait()
		if err != nil {
			if missingMailbox(err) {
				return notFound(op, "%s: no folder %s", ref.ID, src)
			}
			return err
		}
		if sel.UIDValidity != validity {
			return notFound(op, "%s: folder %s was recreated (UIDVALIDITY %d), the message is gone", ref.ID, src, sel.UIDValidity)
		}
		set := imap.UIDSetNum(uid)
		moved, err := c.move(cl, set, dest)
		if err != nil && missingMailbox(err) {
			if cerr := cl.Create(dest, nil).Wait(); cerr != nil && !alreadyExists(cerr) {
				return cerr
			}
			moved, err = c.move(cl, set, dest)
		}
		if err != nil {
			return err
		}
		if !moved {
			return notFound(op, "%s: no such message in %s", ref.ID, src)
		}
		return nil
	})
}

// move moves the messages of set to dest. It reports false when the server said (with
// UIDPLUS) that it moved nothing, because the message was gone.
func (c *Conn) move(cl *imapclient.Client, set imap.UIDSet, dest string) (bool, error) {
	caps := cl.Caps()
	if caps.Has(imap.CapMove) {
		data, err := cl.Move(set, dest).Wait()
		if err != nil {
			return false, err
		}
		return movedAny(data.SourceUIDs, caps.Has(imap.CapUIDPlus)), nil
	}
	// Without MOVE, imapclient would pipeline COPY, STORE and EXPUNGE, deleting the
	// message even when the copy failed: wait for each step.
	data, err := cl.Copy(set, dest).Wait()
	if err != nil {
		return false, err
	}
	if !movedAny(data.SourceUIDs, caps.Has(imap.CapUIDPlus)) {
		return false, nil
	}
	store := cl.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil)
	if err := store.Close(); err != nil {
		return true, err
	}
	if !caps.Has(imap.CapUIDPlus) {
		c.log.Warn("imap: the server has neither MOVE nor UIDPLUS; the moved message is left flagged \\Deleted in its folder", "folder", dest)
		return true, nil
	}
	if err := cl.UIDExpunge(set).Close(); err != nil {
		return true, err
	}
	return true, nil
}

// movedAny reports whether a COPYUID source set names a message. A server with UIDPLUS
// answers every successful copy with COPYUID, so none means nothing was copied; without
// UIDPLUS there is no telling, and it says true.
func movedAny(src imap.NumSet, uidplus bool) bool {
	if src == nil {
		return !uidplus
	}
	switch s := src.(type) {
	case imap.UIDSet:
		return len(s) > 0
	case imap.SeqSet:
		return len(s) > 0
	}
	return true
}

func alreadyExists(err error) bool {
	var ierr *imap.Error
	return errors.As(err, &ierr) && ierr.Code == imap.ResponseCodeAlreadyExists
}
