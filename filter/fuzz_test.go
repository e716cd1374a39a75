package filter

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/crmsync/crmsync"
)

// corpusSubjects returns the Subject header values of the shared real-world MIME corpus
// (shared/corpus/mime-realworld beside the module's root), or nil when it is not there:
// extra seeds, not a requirement.
func corpusSubjects(tb testing.TB) []string {
	tb.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "shared", "corpus", "mime-realworld"))
	if err != nil {
		return nil
	}
	var out []string
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				break // end of the header
			}
			if v, ok := strings.CutPrefix(line, "Subject:"); ok {
				out = append(out, strings.TrimSpace(v))
			}
		}
		return nil
	})
	return out
}

var subjectSeeds = []string{
	"", "RE: Quote CRM:0001323", "AW: WG: Angebot crm:0001323", "CRM:", "CRM:0", "XCRM:0001323", "CRM:0001323abc",
	"=?UTF-8?B?UkU6IFF1b3RlIENSTTowMDAxMzIz?=", "=?iso-8859-1?Q?AW:_Gr=FC=DFe_CRM:0001323?=",
	"=?UTF-8?Q?RE:_hello_CRM:00?= =?UTF-8?Q?01323?=", "=?x?q?", "Re[2]: [EXTERNAL] Fwd: hi", "RE：hello",
	strings.Repeat("é", 300), "\xff\xfe CRM:1", "CRM:0001000 CRM:0002000",
}

// FuzzTokenFind: Find never panics and finds what Stamp put in any subject.
func FuzzTokenFind(f *testing.F) {
	for _, s := range append(subjectSeeds, corpusSubjects(f)...) {
		f.Add(s, int64(1), int64(323))
	}
	cfg := TokenConfig{}
	f.Fuzz(func(t *testing.T, subject string, user, counter int64) {
		if tok, ok := cfg.Find(subject); ok {
			if !strings.HasPrefix(tok, "CRM:") || !allDigits(tok[4:]) {
				t.Fatalf("Find(%q) = %q", subject, tok)
			}
		}
		tok := cfg.Format(user, counter)
		if _, err := cfg.Parse(tok); err != nil {
			t.Fatalf("Parse(Format(%d, %d)=%q): %v", user, counter, tok, err)
		}
		stamped := cfg.Stamp(subject, tok)
		if n := utf8.RuneCountInString(stamped); n > MaxSubjectLen {
			t.Fatalf("Stamp made %d characters", n)
		}
		if got, ok := cfg.Find(stamped); !ok || got != tok {
			t.Fatalf("Find(Stamp(%q)) = %q, %v; want %q", subject, got, ok, tok)
		}
		if again := cfg.Stamp(stamped, tok); again != stamped {
			t.Fatalf("Stamp is not idempotent: %q then %q", stamped, again)
		}
	})
}

// FuzzParseFilter: the parser never panics, and parse → print → parse is stable.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		``, `owner = @me and (status != "completed" or due >= today)`, `priority in (1, 2.5, -3e2)`,
		`due <= 2026-03-01T09:30:00.123456789+02:00 or due = 2026-03-01`, `subject contains "a\"b\\c\u00e9\x00"`,
		`a = 1 and (b = 2 or (c = 3 and d = 4))`, `x is not null or y is-null or z not-null`, `email begins-with "x" or due = last-30-days`,
		`((((a=1))))`, `a in (@me, "u")`, `a = -0`, `a = 1e308`, `a = 0001`, `a = 1.0000000000000001`, `a = 2024-02-30`,
		"a = 1\nand\tb = 2", `a <> 1 and b == 2 and c eq 3`, `A = TRUE OR b = False`,
	} {
		f.Add(s)
	}
	kinds := []crmsync.ItemKind{crmsync.KindContact, crmsync.KindAppointment, crmsync.KindTask}
	f.Fuzz(func(t *testing.T, src string) {
		e, err := ParseExpr(src)
		if err != nil {
			return
		}
		printed := exprString(e)
		e2, err := ParseExpr(printed)
		if err != nil {
			t.Fatalf("printed %q (from %q) does not parse: %v", printed, src, err)
		}
		if !Equal(e, e2) {
			t.Fatalf("round trip changed the expression:\n%q\n%q", printed, exprString(e2))
		}
		if again := exprString(e2); again != printed {
			t.Fatalf("printing is not stable:\n%q\n%q", printed, again)
		}
		for _, k := range kinds {
			fl, err := Parse(k, src)
			if err != nil {
				continue
			}
			if err := fl.Validate(); err != nil {
				t.Fatalf("Parse accepted %q but Validate says %v", src, err)
			}
			fl.Match(&crmsync.Item{Kind: k}, Env{Now: evalNow, UserID: "u"})
			if _, _, err := ToSQL(fl, Postgres, allColumns(k), Env{Now: evalNow, UserID: "u"}); err != nil {
				t.Fatalf("ToSQL(%q): %v", src, err)
			}
		}
	})
}

func allColumns(k crmsync.ItemKind) ColumnMap {
	m := ColumnMap{}
	for _, f := range fieldTable[k] {
		m[f.Name] = f.Name
	}
	return m
}

// FuzzThreadIndex: the decoder never panics, and what it decodes encodes back to the
// same header.
func FuzzThreadIndex(f *testing.F) {
	root := ThreadIndex{Start: evalNow, GUID: [16]byte{1, 2, 3}}.String()
	for _, s := range []string{"", root, childOf(root), childOf(childOf(root)), "AQ==", "Ac/5x8rGtnfTUV0eRV2mSd4sh/Ng",
		"Ac/5x8rGtnfTUV0eRV2mSd4sh/NgAAAAADA=", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 27))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ti, err := DecodeThreadIndex(s)
		if err != nil {
			if _, err2 := ConversationID(s); err2 == nil {
				t.Fatalf("ConversationID accepts what DecodeThreadIndex refuses: %q", s)
			}
			return
		}
		id, err := ConversationID(s)
		if err != nil || id != ti.ConversationID() {
			t.Fatalf("ConversationID(%q) = %q, %v; want %q", s, id, err, ti.ConversationID())
		}
		again, err := DecodeThreadIndex(ti.String())
		if err != nil {
			t.Fatalf("re-encoded %q does not decode: %v", ti.String(), err)
		}
		if !again.Start.Equal(ti.Start) || again.GUID != ti.GUID || len(again.Children) != len(ti.Children) {
			t.Fatalf("round trip changed %q: %+v then %+v", s, ti, again)
		}
		for i := range ti.Children {
			if again.Children[i] != ti.Children[i] {
				t.Fatalf("child %d changed: %+v then %+v", i, ti.Children[i], again.Children[i])
			}
		}
		if !IsAncestorOf(ti.String(), childOf(ti.String())) {
			t.Fatalf("a header is not the ancestor of its child")
		}
	})
}

// FuzzNormalizeSubject: the normalizer never panics and is idempotent.
func FuzzNormalizeSubject(f *testing.F) {
	for _, s := range append(subjectSeeds, corpusSubjects(f)...) {
		f.Add(s)
	}
	n := NewSubjectNormalizer(nil, TokenConfig{})
	f.Fuzz(func(t *testing.T, s string) {
		got := n.Normalize(s)
		if got != strings.TrimSpace(got) {
			t.Fatalf("Normalize(%q) = %q has surrounding space", s, got)
		}
		if strings.Contains(got, "=?") {
			return // decoding may uncover further encoded words: not idempotent by design
		}
		if again := n.Normalize(got); again != got {
			t.Fatalf("not idempotent: %q → %q → %q", s, got, again)
		}
		if (n.SubjectHash(s) == "") != (got == "") {
			t.Fatalf("SubjectHash(%q) disagrees with Normalize", s)
		}
	})
}
