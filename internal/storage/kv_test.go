package storage

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func openTestDB(t *testing.T) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "obj.sqlite"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustPut(t *testing.T, db *DB, key, value string) {
	t.Helper()
	if err := db.Put(key, []byte(value)); err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
}

func keysOf(kvs []KV) []string {
	out := []string{}
	for _, kv := range kvs {
		out = append(out, kv.Key)
	}
	return out
}

func TestGetPutDelete(t *testing.T) {
	db := openTestDB(t)
	if _, ok, err := db.Get("missing"); err != nil || ok {
		t.Fatalf("get on empty db: ok=%v err=%v", ok, err)
	}
	mustPut(t, db, "a", "1")
	mustPut(t, db, "a", "2") // overwrite
	mustPut(t, db, "", "empty key")
	if err := db.Put("nil", nil); err != nil {
		t.Fatal(err)
	}
	v, ok, err := db.Get("a")
	if err != nil || !ok || string(v) != "2" {
		t.Fatalf("get a = %q %v %v, want 2", v, ok, err)
	}
	v, ok, _ = db.Get("nil")
	if !ok || v == nil || len(v) != 0 {
		t.Fatalf("nil value stored as %#v ok=%v, want empty non-nil", v, ok)
	}
	v, ok, _ = db.Get("")
	if !ok || string(v) != "empty key" {
		t.Fatalf("empty key: %q %v", v, ok)
	}
	existed, err := db.Delete("a")
	if err != nil || !existed {
		t.Fatalf("delete a: existed=%v err=%v", existed, err)
	}
	existed, err = db.Delete("a")
	if err != nil || existed {
		t.Fatalf("second delete a: existed=%v err=%v", existed, err)
	}
	if _, ok, _ := db.Get("a"); ok {
		t.Fatal("a still there after delete")
	}
}

func TestGetManyPutManyDeleteMany(t *testing.T) {
	db := openTestDB(t)
	if err := db.PutMany([]KV{{"c", []byte("3")}, {"a", []byte("1")}, {"b", []byte("2")}, {"a", []byte("1b")}}); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetMany([]string{"c", "zz", "a", "c"})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(keysOf(got)) != "[a c]" || string(got[0].Value) != "1b" || string(got[1].Value) != "3" {
		t.Fatalf("GetMany = %+v", got)
	}
	n, err := db.DeleteMany([]string{"a", "b", "nope", "a"})
	if err != nil || n != 2 {
		t.Fatalf("DeleteMany = %d, %v; want 2", n, err)
	}
	all, _ := db.List(ListOptions{})
	if fmt.Sprint(keysOf(all)) != "[c]" {
		t.Fatalf("after DeleteMany: %v", keysOf(all))
	}
}

func TestLimits(t *testing.T) {
	db := openTestDB(t)
	longKey := strings.Repeat("k", MaxKeySize+1)
	okKey := strings.Repeat("k", MaxKeySize)
	big := make([]byte, MaxValueSize+1)

	for name, err := range map[string]error{
		"put long key":   db.Put(longKey, []byte("v")),
		"put big value":  db.Put("big", big),
		"get long key":   func() error { _, _, err := db.Get(longKey); return err }(),
		"del long key":   func() error { _, err := db.Delete(longKey); return err }(),
		"getmany 129":    func() error { _, err := db.GetMany(make([]string, MaxBatchKeys+1)); return err }(),
		"putmany 129":    db.PutMany(make([]KV, MaxBatchKeys+1)),
		"deletemany 129": func() error { _, err := db.DeleteMany(make([]string, MaxBatchKeys+1)); return err }(),
	} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	err := db.Put("big", big)
	for _, want := range []string{`"big"`, "131073 bytes", "131072"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("value error %q lacks %q", err, want)
		}
	}
	err = db.Put(longKey, nil)
	for _, want := range []string{"2049 bytes", "2048", `"kkkk`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("key error %q lacks %q", err, want)
		}
	}
	// At the limits exactly: accepted.
	if err := db.Put(okKey, make([]byte, MaxValueSize)); err != nil {
		t.Fatalf("put at limits: %v", err)
	}
	if err := db.PutMany(make([]KV, MaxBatchKeys)); err != nil {
		t.Fatalf("putmany of %d: %v", MaxBatchKeys, err)
	}

	// One bad entry: nothing of the batch is written.
	err = db.PutMany([]KV{{"x1", []byte("1")}, {"x2", big}, {"x3", []byte("3")}})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"x2"`) {
		t.Fatalf("bad batch: %v", err)
	}
	if got, _ := db.GetMany([]string{"x1", "x3"}); len(got) != 0 {
		t.Fatalf("bad batch wrote %v", keysOf(got))
	}
}

func TestList(t *testing.T) {
	db := openTestDB(t)
	if got, err := db.List(ListOptions{}); err != nil || len(got) != 0 {
		t.Fatalf("list on fresh db: %v %v", got, err)
	}
	// UTF-8 byte order: "B" < "a" < "é" (0xC3) < "😀" (0xF0); "ab" < "b".
	keys := []string{"b", "a", "ab", "abc", "B", "é", "😀", "ac", "a\x00"}
	for _, k := range keys {
		mustPut(t, db, k, "v"+k)
	}
	cases := []struct {
		opts ListOptions
		want string
	}{
		{ListOptions{}, "[B a a\x00 ab abc ac b é 😀]"},
		{ListOptions{Reverse: true}, "[😀 é b ac abc ab a\x00 a B]"},
		{ListOptions{Prefix: "ab"}, "[ab abc]"},
		{ListOptions{Prefix: "a", Limit: 2}, "[a a\x00]"},
		{ListOptions{Prefix: "a", Reverse: true, Limit: 2}, "[ac abc]"},
		{ListOptions{Start: "ab", End: "b"}, "[ab abc ac]"},
		{ListOptions{StartAfter: "ab", End: "b"}, "[abc ac]"},
		{ListOptions{Start: "b"}, "[b é 😀]"},
		{ListOptions{End: "a"}, "[B]"},
		{ListOptions{Limit: 1}, "[B]"},
		{ListOptions{Prefix: "\xc3"}, "[é]"},
		{ListOptions{Start: "zzz"}, "[é 😀]"},
		{ListOptions{Start: "\xff"}, "[]"},
	}
	for _, c := range cases {
		got, err := db.List(c.opts)
		if err != nil {
			t.Fatalf("%+v: %v", c.opts, err)
		}
		if s := fmt.Sprint(keysOf(got)); s != c.want {
			t.Errorf("list %+v = %q, want %q", c.opts, s, c.want)
		}
		for _, kv := range got {
			if string(kv.Value) != "v"+kv.Key {
				t.Errorf("value of %q = %q", kv.Key, kv.Value)
			}
		}
	}
	if _, err := db.List(ListOptions{Start: "a", StartAfter: "b"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("start+startAfter: %v", err)
	}
	if _, err := db.List(ListOptions{Limit: -1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative limit: %v", err)
	}
}

func TestPrefixEnd(t *testing.T) {
	for in, want := range map[string]string{"a": "b", "ab": "ac", "a\xff": "b", "\xff\xff": ""} {
		got, ok := prefixEnd(in)
		if got != want || ok != (want != "") {
			t.Errorf("prefixEnd(%q) = %q %v", in, got, ok)
		}
	}
}

func TestValuesRoundTripBytes(t *testing.T) {
	db := openTestDB(t)
	v := []byte{0, 1, 2, 0xff, 0, 'x'}
	if err := db.Put("bin", v); err != nil {
		t.Fatal(err)
	}
	got, _, _ := db.Get("bin")
	if !bytes.Equal(got, v) {
		t.Fatalf("got %v want %v", got, v)
	}
}

func TestDeleteAll(t *testing.T) {
	db := openTestDB(t)
	mustPut(t, db, "a", "1")
	if _, err := db.Exec(`CREATE TABLE parent (id INTEGER PRIMARY KEY);
		CREATE TABLE child (id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id));
		CREATE INDEX child_p ON child (p);
		CREATE VIEW v AS SELECT * FROM child;
		CREATE TRIGGER tr AFTER INSERT ON parent BEGIN INSERT INTO child (p) VALUES (new.id); END;
		CREATE VIRTUAL TABLE ft USING fts5 (body);
		INSERT INTO parent VALUES (1); INSERT INTO ft VALUES ('hello');`); err != nil {
		t.Fatal(err)
	}
	if err := db.SetAlarm(testTime(1)); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteAll(DeleteAllOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.List(ListOptions{}); len(got) != 0 {
		t.Fatalf("kv left: %v", keysOf(got))
	}
	cur, err := db.Exec(`SELECT name FROM sqlite_schema WHERE name NOT LIKE '\_cf\_%' ESCAPE '\'`)
	if err != nil {
		t.Fatal(err)
	}
	if rows, _ := cur.All(); len(rows) != 0 {
		t.Fatalf("schema left: %v", rows)
	}
	if _, ok, _ := db.GetAlarm(); !ok {
		t.Fatal("DeleteAll without Alarm removed the alarm")
	}
	if err := db.DeleteAll(DeleteAllOptions{Alarm: true}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := db.GetAlarm(); ok {
		t.Fatal("DeleteAll{Alarm} kept the alarm")
	}
	// Usable afterwards.
	mustPut(t, db, "b", "2")
	if _, err := db.Exec("CREATE TABLE parent (x)"); err != nil {
		t.Fatal(err)
	}
}
