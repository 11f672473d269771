package storage

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func execAll(t *testing.T, db *DB, q string, args ...any) ([][]any, *Cursor) {
	t.Helper()
	cur, err := db.Exec(q, args...)
	if err != nil {
		t.Fatalf("exec %q: %v", q, err)
	}
	rows, err := cur.All()
	if err != nil {
		t.Fatalf("read %q: %v", q, err)
	}
	return rows, cur
}

func TestExecValuesAndColumns(t *testing.T) {
	db := openTestDB(t)
	execAll(t, db, "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n, d DATETIME)")
	execAll(t, db, "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", 42, 1.5, "héllo", []byte{0, 1}, nil, "2024-01-02 03:04:05")
	execAll(t, db, "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", int64(-1), float32(2), "", []byte{}, true, "not a date")
	rows, cur := execAll(t, db, "SELECT * FROM t ORDER BY i DESC")
	if want := []string{"i", "r", "s", "b", "n", "d"}; !reflect.DeepEqual(cur.Columns(), want) {
		t.Fatalf("columns %v", cur.Columns())
	}
	want := [][]any{
		{int64(42), 1.5, "héllo", []byte{0, 1}, nil, "2024-01-02 03:04:05"},
		{int64(-1), 2.0, "", []byte{}, int64(1), "not a date"},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("rows\n got %#v\nwant %#v", rows, want)
	}
	// Functions the containers package relies on.
	rows, _ = execAll(t, db, "SELECT length(randomblob(8)), unixepoch() > 0, sqlite_version() >= '3.38'")
	if !reflect.DeepEqual(rows, [][]any{{int64(8), int64(1), int64(1)}}) {
		t.Fatalf("functions: %v", rows)
	}
	if _, err := db.Exec("SELECT ?", struct{}{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unsupported binding type: %v", err)
	}
}

func TestExecMultiStatement(t *testing.T) {
	db := openTestDB(t)
	rows, cur := execAll(t, db, `
		CREATE TABLE t (x); -- comment
		INSERT INTO t VALUES (1), (2), (3);
		SELECT 'ignored';
		/* block */ SELECT x FROM t ORDER BY x;
		-- trailing comment
	`)
	if !reflect.DeepEqual(rows, [][]any{{int64(1)}, {int64(2)}, {int64(3)}}) || cur.Columns()[0] != "x" {
		t.Fatalf("rows %v cols %v", rows, cur.Columns())
	}
	if cur.RowsWritten() != 3 {
		t.Errorf("rowsWritten = %d, want 3", cur.RowsWritten())
	}
	// Each statement takes its own bindings, in order.
	rows, _ = execAll(t, db, "INSERT INTO t VALUES (?); SELECT ? + ?", 10, 1, 2)
	if !reflect.DeepEqual(rows, [][]any{{int64(3)}}) {
		t.Fatalf("rows %v", rows)
	}
	if _, err := db.Exec("SELECT ?; SELECT ?", 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("too few bindings: %v", err)
	}
	if _, err := db.Exec("SELECT ?", 1, 2); !errors.Is(err, ErrInvalid) {
		t.Errorf("too many bindings: %v", err)
	}
	// A failing statement undoes the query's earlier statements.
	_, err := db.Exec("INSERT INTO t VALUES (100); INSERT INTO nope VALUES (1)")
	var se *SQLiteError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "no such table: nope") || !errors.Is(err, ErrSQL) {
		t.Fatalf("error = %v", err)
	}
	rows, _ = execAll(t, db, "SELECT count(*) FROM t WHERE x = 100")
	if rows[0][0] != int64(0) {
		t.Fatal("failed query left its first statement's write")
	}
	// A statement with no rows still gives an empty, well-formed cursor.
	rows, cur = execAll(t, db, "DELETE FROM t WHERE x = 10")
	if len(rows) != 0 || cur.RowsWritten() != 1 || len(cur.Columns()) != 0 {
		t.Fatalf("delete: rows %v written %d cols %v", rows, cur.RowsWritten(), cur.Columns())
	}
	_, cur = execAll(t, db, "")
	if len(cur.Columns()) != 0 {
		t.Fatal("empty query has columns")
	}
}

func TestExecCounters(t *testing.T) {
	db := openTestDB(t)
	execAll(t, db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v)")
	_, cur := execAll(t, db, "WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 100) INSERT INTO t (v) SELECT value FROM s")
	if cur.RowsWritten() != 100 {
		t.Errorf("insert 100: rowsWritten %d", cur.RowsWritten())
	}
	_, cur = execAll(t, db, "SELECT * FROM t WHERE v = 50") // full scan
	if cur.RowsRead() < 100 || cur.RowsWritten() != 0 {
		t.Errorf("full scan: rowsRead %d (want >= 100), rowsWritten %d", cur.RowsRead(), cur.RowsWritten())
	}
	_, cur = execAll(t, db, "SELECT * FROM t WHERE id = 50") // index lookup
	if cur.RowsRead() != 1 {
		t.Errorf("lookup: rowsRead %d, want 1", cur.RowsRead())
	}
	_, cur = execAll(t, db, "UPDATE t SET v = 0 WHERE id <= 10")
	if cur.RowsWritten() != 10 || cur.RowsRead() < 10 {
		t.Errorf("update: rowsRead %d rowsWritten %d", cur.RowsRead(), cur.RowsWritten())
	}
	// rowsRead grows while the cursor is read.
	cur, err := db.Exec("SELECT id FROM t WHERE id <= 5")
	if err != nil {
		t.Fatal(err)
	}
	var seen []int64
	for cur.Next() {
		seen = append(seen, cur.RowsRead())
	}
	if fmt.Sprint(seen) != "[1 2 3 4 5]" {
		t.Errorf("rowsRead while reading: %v", seen)
	}
}

func TestExecForbidden(t *testing.T) {
	db := openTestDB(t)
	mustPut(t, db, "k", "v")
	if err := db.SetAlarm(testTime(5)); err != nil {
		t.Fatal(err)
	}
	execAll(t, db, "CREATE TABLE mine (x)")
	for _, q := range []string{
		"SELECT * FROM _cf_KV",
		"select value from _CF_kv",
		"INSERT INTO _cf_KV VALUES ('a', 'b')",
		"DELETE FROM _cf_META",
		"UPDATE _cf_KV SET value = 1",
		"DROP TABLE _cf_KV",
		"CREATE TABLE _cf_mine (x)",
		"CREATE INDEX i ON _cf_KV (value)",
		"CREATE TRIGGER tr_on_kv AFTER INSERT ON _cf_KV BEGIN SELECT 1; END",
		"CREATE VIEW v AS SELECT 1; SELECT * FROM _cf_KV",
		"ALTER TABLE _cf_KV ADD COLUMN y",
		"PRAGMA table_info(_cf_KV)",
		"BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK", "SAVEPOINT x", "RELEASE x",
		"ATTACH DATABASE ':memory:' AS other",
		"PRAGMA journal_mode = DELETE", "PRAGMA synchronous = OFF", "PRAGMA writable_schema = ON",
	} {
		_, err := db.Exec(q)
		if !errors.Is(err, ErrForbidden) || !errors.Is(err, errdefs.ErrPermissionDenied) || !strings.HasSuffix(err.Error(), "SQLITE_AUTH") {
			t.Errorf("%q: err = %v, want ErrForbidden", q, err)
		}
	}
	// A trigger body naming _cf_KV is stored, but cannot run: SQLite
	// authorizes trigger bodies when the firing statement is compiled.
	execAll(t, db, "CREATE TRIGGER tr AFTER INSERT ON mine BEGIN DELETE FROM _cf_KV; END")
	if _, err := db.Exec("INSERT INTO mine VALUES (1)"); !errors.Is(err, ErrForbidden) {
		t.Errorf("trigger touching _cf_KV ran: %v", err)
	}
	_, err := db.Exec("BEGIN")
	if !strings.Contains(err.Error(), "transactionSync") {
		t.Errorf("BEGIN error does not point to transactionSync: %v", err)
	}
	_, err = db.Exec("SELECT * FROM _cf_KV")
	if !strings.Contains(err.Error(), "access to _cf_KV.key is prohibited") {
		t.Errorf("message: %v", err)
	}
	// The internal data is intact, and allowed PRAGMAs work.
	if v, ok, _ := db.Get("k"); !ok || string(v) != "v" {
		t.Fatal("kv damaged")
	}
	rows, _ := execAll(t, db, "PRAGMA table_info(mine)")
	if len(rows) != 1 {
		t.Fatalf("table_info: %v", rows)
	}
	execAll(t, db, "PRAGMA foreign_keys")
	execAll(t, db, "SELECT name FROM sqlite_schema")
}

func TestDatabaseSize(t *testing.T) {
	db := openTestDB(t)
	before, err := db.DatabaseSize()
	if err != nil {
		t.Fatal(err)
	}
	execAll(t, db, "CREATE TABLE t (b BLOB); WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 100) INSERT INTO t SELECT randomblob(1000) FROM s")
	after, err := db.DatabaseSize()
	if err != nil {
		t.Fatal(err)
	}
	if after < before+100*1000 || after%4096 != 0 {
		t.Fatalf("size %d -> %d", before, after)
	}
}

func TestCursorAfterCloseAndRollback(t *testing.T) {
	db := openTestDB(t)
	execAll(t, db, "CREATE TABLE t (x); WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 10) INSERT INTO t SELECT value FROM s")
	cur, err := db.Exec("SELECT x FROM t")
	if err != nil {
		t.Fatal(err)
	}
	cur.Next()
	cur.Close()
	if cur.Next() {
		t.Fatal("Next after Close")
	}
	// A cursor left open across a commit keeps working.
	if err := db.Begin(); err != nil {
		t.Fatal(err)
	}
	cur, _ = db.Exec("SELECT x FROM t")
	cur.Next()
	mustPut(t, db, "k", "v")
	if err := db.Commit(); err != nil {
		t.Fatal(err)
	}
	rest, err := cur.All()
	if err != nil || len(rest) != 9 {
		t.Fatalf("after commit: %d rows, %v", len(rest), err)
	}
	// And one opened outside an event survives an event around it.
	cur, _ = db.Exec("SELECT x FROM t")
	cur.Next()
	if err := db.Begin(); err != nil {
		t.Fatal(err)
	}
	mustPut(t, db, "k2", "v")
	if err := db.Commit(); err != nil {
		t.Fatal(err)
	}
	if rest, err := cur.All(); err != nil || len(rest) != 9 {
		t.Fatalf("cursor across event: %d rows, %v", len(rest), err)
	}
	// A rollback ends the cursors reading inside the rolled-back event.
	if err := db.Begin(); err != nil {
		t.Fatal(err)
	}
	execAll(t, db, "INSERT INTO t VALUES (11)")
	cur, _ = db.Exec("SELECT x FROM t")
	cur.Next()
	if err := db.Rollback(); err != nil {
		t.Fatal(err)
	}
	rest, err = cur.All()
	t.Logf("cursor after rollback: %d more rows, err %v", len(rest), err)
	if rows, _ := execAll(t, db, "SELECT count(*) FROM t"); rows[0][0] != int64(10) {
		t.Fatalf("rollback kept the insert: %v", rows)
	}
}
