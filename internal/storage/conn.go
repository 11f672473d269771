package storage

// A thin binding to SQLite's C API as transpiled to Go by modernc.org/sqlite/lib.
// We use the C API rather than modernc.org/sqlite's database/sql driver because
// the driver turns TEXT in DATE/DATETIME columns into time.Time (Cloudflare
// returns the string), hides sqlite3_stmt_status and total_changes (needed for
// rowsRead/rowsWritten), and runs multi-statement scripts with semantics we
// cannot adjust. The SQLite engine itself is the library's, untouched.

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"modernc.org/libc"
	"modernc.org/libc/sys/types"
	sqlite3 "modernc.org/sqlite/lib"
)

var patchOnce sync.Once

// conn is one SQLite connection. It is not safe for concurrent use; DB
// serialises access with its mutex.
type conn struct {
	tls  *libc.TLS
	db   uintptr
	auth uintptr // key of this conn in authConns

	// guarded is true while user SQL is prepared or stepped: the authorizer
	// then applies userSQLPolicy. Internal statements run unguarded.
	guarded bool
	// denial explains the last authorizer refusal, so the SQLITE_AUTH error
	// can say what was refused and why.
	denial string
}

var (
	authConns  sync.Map // uintptr -> *conn
	nextAuthID atomic.Uintptr
)

func openConn(path string) (*conn, error) {
	patchOnce.Do(sqlite3.PatchIssue199)
	c := &conn{tls: libc.NewTLS()}
	cpath, err := libc.CString(path)
	if err != nil {
		c.tls.Close()
		return nil, err
	}
	defer libc.Xfree(c.tls, cpath)
	pdb := libc.Xmalloc(c.tls, 8)
	if pdb == 0 {
		c.tls.Close()
		return nil, fmt.Errorf("open %s: out of memory", path)
	}
	defer libc.Xfree(c.tls, pdb)
	*(*uintptr)(cmem(pdb)) = 0
	flags := int32(sqlite3.SQLITE_OPEN_READWRITE | sqlite3.SQLITE_OPEN_CREATE |
		sqlite3.SQLITE_OPEN_NOMUTEX | sqlite3.SQLITE_OPEN_EXRESCODE)
	rc := sqlite3.Xsqlite3_open_v2(c.tls, cpath, pdb, flags, 0)
	c.db = *(*uintptr)(cmem(pdb))
	if rc != sqlite3.SQLITE_OK {
		err := c.errorFor(rc)
		if c.db != 0 {
			sqlite3.Xsqlite3_close_v2(c.tls, c.db)
		}
		c.tls.Close()
		return nil, err
	}
	c.auth = nextAuthID.Add(1)
	authConns.Store(c.auth, c)
	if rc := sqlite3.Xsqlite3_set_authorizer(c.tls, c.db, cFuncPointer(authorizerCallback), c.auth); rc != sqlite3.SQLITE_OK {
		err := c.errorFor(rc)
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *conn) close() error {
	if c.db == 0 {
		return nil
	}
	rc := sqlite3.Xsqlite3_close_v2(c.tls, c.db)
	var err error
	if rc != sqlite3.SQLITE_OK {
		err = c.errorFor(rc)
	}
	authConns.Delete(c.auth)
	c.db = 0
	c.tls.Close()
	return err
}

// errorFor turns a failed result code into a *SQLiteError carrying
// SQLite's message for the connection's last failure.
func (c *conn) errorFor(rc int32) error {
	msg := ""
	if c.db != 0 {
		msg = libc.GoString(sqlite3.Xsqlite3_errmsg(c.tls, c.db))
	}
	if msg == "" {
		msg = libc.GoString(sqlite3.Xsqlite3_errstr(c.tls, rc))
	}
	return &SQLiteError{Code: int(rc), Message: msg}
}

func (c *conn) totalChanges() int64 {
	return int64(sqlite3.Xsqlite3_total_changes64(c.tls, c.db))
}

func (c *conn) inTransaction() bool {
	return sqlite3.Xsqlite3_get_autocommit(c.tls, c.db) == 0
}

// exec runs internal SQL (no bindings, any number of statements) to completion.
func (c *conn) exec(query string) error {
	csql, err := libc.CString(query)
	if err != nil {
		return err
	}
	defer libc.Xfree(c.tls, csql)
	for tail := csql; *(*byte)(cmem(tail)) != 0; {
		s, next, err := c.prepare(tail, false)
		if err != nil {
			return err
		}
		tail = next
		if s == nil {
			continue
		}
		for {
			row, err := s.step()
			if err != nil {
				s.finalize()
				return err
			}
			if !row {
				break
			}
		}
		s.finalize()
	}
	return nil
}

// prepare compiles the first statement at csql. It returns a nil stmt for
// text holding only whitespace or comments, and the rest of the text.
func (c *conn) prepare(csql uintptr, persistent bool) (*stmt, uintptr, error) {
	out := libc.Xmalloc(c.tls, 16)
	if out == 0 {
		return nil, 0, fmt.Errorf("prepare: out of memory")
	}
	defer libc.Xfree(c.tls, out)
	pstmt, ptail := out, out+8
	var flags uint32
	if persistent {
		flags = sqlite3.SQLITE_PREPARE_PERSISTENT
	}
	c.denial = ""
	rc := sqlite3.Xsqlite3_prepare_v3(c.tls, c.db, csql, -1, flags, pstmt, ptail)
	if rc != sqlite3.SQLITE_OK {
		return nil, 0, c.stepError(rc)
	}
	p := *(*uintptr)(cmem(pstmt))
	tail := *(*uintptr)(cmem(ptail))
	if p == 0 {
		return nil, tail, nil
	}
	return &stmt{c: c, p: p}, tail, nil
}

// stepError is errorFor, but a refusal by the authorizer becomes ErrForbidden
// with the reason the policy gave.
func (c *conn) stepError(rc int32) error {
	if rc&0xff == sqlite3.SQLITE_AUTH && c.denial != "" {
		return fmt.Errorf("%s: %w", c.denial, ErrForbidden)
	}
	return c.errorFor(rc)
}

// prepareString compiles one internal statement, kept for reuse.
func (c *conn) prepareString(query string) (*stmt, error) {
	csql, err := libc.CString(query)
	if err != nil {
		return nil, err
	}
	defer libc.Xfree(c.tls, csql)
	s, _, err := c.prepare(csql, true)
	if err != nil {
		return nil, fmt.Errorf("prepare %q: %w", query, err)
	}
	if s == nil {
		return nil, fmt.Errorf("prepare %q: empty statement", query)
	}
	return s, nil
}

type stmt struct {
	c *conn
	p uintptr
}

func (s *stmt) paramCount() int {
	return int(sqlite3.Xsqlite3_bind_parameter_count(s.c.tls, s.p))
}

// bind binds args to parameters 1..len(args). Supported types: nil, string,
// []byte, bool, all integer kinds, float32 and float64.
func (s *stmt) bind(args ...any) error {
	tls := s.c.tls
	for i, a := range args {
		n := int32(i + 1)
		var rc int32
		switch v := a.(type) {
		case nil:
			rc = sqlite3.Xsqlite3_bind_null(tls, s.p, n)
		case string:
			rc = s.bindBytes(n, unsafe.Slice(unsafe.StringData(v), len(v)), true)
		case []byte:
			if v == nil {
				rc = sqlite3.Xsqlite3_bind_null(tls, s.p, n)
			} else {
				rc = s.bindBytes(n, v, false)
			}
		case bool:
			var x int64
			if v {
				x = 1
			}
			rc = sqlite3.Xsqlite3_bind_int64(tls, s.p, n, x)
		case int:
			rc = sqlite3.Xsqlite3_bind_int64(tls, s.p, n, int64(v))
		case int8:
			rc = sqlite3.Xsqlite3_bind_int64(tls, s.p, n, int64(v))
		case int16:
			rc = sqlite3.Xsqlite3_bind_int64(tls, s.p, n, int64(v))
		case int32:
			rc = sqlite3.Xsqlite3_bind_int64(tls, s.p, n, int64(v))
		case int64:
			rc = sqlite3.Xsqlite3_bind_int64(tls, s.p, n, v)
		case uint8:
			rc = sqlite3.Xsqlite3_bind_int64(tls, s.p, n, int64(v))
		case uint16:
			rc = sqlite3.Xsqlite3_bind_int64(tls, s.p, n, int64(v))
		case uint32:
			rc = sqlite3.Xsqlite3_bind_int64(tls, s.p, n, int64(v))
		case uint:
			if uint64(v) > 1<<63-1 {
				return fmt.Errorf("binding %d: integer %d overflows int64: %w", n, v, ErrInvalid)
			}
			rc = sqlite3.Xsqlite3_bind_int64(tls, s.p, n, int64(v))
		case uint64:
			if v > 1<<63-1 {
				return fmt.Errorf("binding %d: integer %d overflows int64: %w", n, v, ErrInvalid)
			}
			rc = sqlite3.Xsqlite3_bind_int64(tls, s.p, n, int64(v))
		case float32:
			rc = sqlite3.Xsqlite3_bind_double(tls, s.p, n, float64(v))
		case float64:
			rc = sqlite3.Xsqlite3_bind_double(tls, s.p, n, v)
		default:
			return fmt.Errorf("binding %d: unsupported type %T (want string, number, []byte or nil): %w", n, a, ErrInvalid)
		}
		if rc != sqlite3.SQLITE_OK {
			return fmt.Errorf("binding %d: %w", n, s.c.errorFor(rc))
		}
	}
	return nil
}

// bindBytes copies b into SQLite-owned memory: the Go memory must not be
// handed to C code, which could keep it past the Go object's life.
func (s *stmt) bindBytes(n int32, b []byte, text bool) int32 {
	tls := s.c.tls
	p := libc.Xmalloc(tls, types.Size_t(len(b)+1))
	if p == 0 {
		return sqlite3.SQLITE_NOMEM
	}
	defer libc.Xfree(tls, p)
	if len(b) > 0 {
		copy(unsafe.Slice((*byte)(cmem(p)), len(b)), b)
	}
	if text {
		return sqlite3.Xsqlite3_bind_text64(tls, s.p, n, p, uint64(len(b)), sqlite3.SQLITE_TRANSIENT, sqlite3.SQLITE_UTF8)
	}
	return sqlite3.Xsqlite3_bind_blob64(tls, s.p, n, p, uint64(len(b)), sqlite3.SQLITE_TRANSIENT)
}

// step advances the statement; row reports whether a row is available.
func (s *stmt) step() (row bool, err error) {
	switch rc := sqlite3.Xsqlite3_step(s.c.tls, s.p); rc {
	case sqlite3.SQLITE_ROW:
		return true, nil
	case sqlite3.SQLITE_DONE:
		return false, nil
	default:
		return false, s.c.stepError(rc)
	}
}

// reset makes the statement ready to run again and drops its bindings.
func (s *stmt) reset() {
	sqlite3.Xsqlite3_reset(s.c.tls, s.p)
	sqlite3.Xsqlite3_clear_bindings(s.c.tls, s.p)
}

func (s *stmt) finalize() {
	if s.p != 0 {
		sqlite3.Xsqlite3_finalize(s.c.tls, s.p)
		s.p = 0
	}
}

func (s *stmt) columnCount() int {
	return int(sqlite3.Xsqlite3_column_count(s.c.tls, s.p))
}

func (s *stmt) columnName(i int) string {
	return libc.GoString(sqlite3.Xsqlite3_column_name(s.c.tls, s.p, int32(i)))
}

func (s *stmt) fullScanSteps() int64 {
	return int64(sqlite3.Xsqlite3_stmt_status(s.c.tls, s.p, sqlite3.SQLITE_STMTSTATUS_FULLSCAN_STEP, 0))
}

// value returns column i of the current row as int64, float64, string,
// []byte (never nil for a BLOB) or nil.
func (s *stmt) value(i int) any {
	tls := s.c.tls
	switch sqlite3.Xsqlite3_column_type(tls, s.p, int32(i)) {
	case sqlite3.SQLITE_INTEGER:
		return int64(sqlite3.Xsqlite3_column_int64(tls, s.p, int32(i)))
	case sqlite3.SQLITE_FLOAT:
		return sqlite3.Xsqlite3_column_double(tls, s.p, int32(i))
	case sqlite3.SQLITE_TEXT:
		p := sqlite3.Xsqlite3_column_text(tls, s.p, int32(i))
		n := int(sqlite3.Xsqlite3_column_bytes(tls, s.p, int32(i)))
		if p == 0 || n == 0 {
			return ""
		}
		return string(unsafe.Slice((*byte)(cmem(p)), n))
	case sqlite3.SQLITE_BLOB:
		p := sqlite3.Xsqlite3_column_blob(tls, s.p, int32(i))
		n := int(sqlite3.Xsqlite3_column_bytes(tls, s.p, int32(i)))
		b := make([]byte, n)
		if p != 0 && n > 0 {
			copy(b, unsafe.Slice((*byte)(cmem(p)), n))
		}
		return b
	default:
		return nil
	}
}

func (s *stmt) text(i int) string {
	v, _ := s.value(i).(string)
	return v
}

func (s *stmt) int64(i int) int64 {
	return int64(sqlite3.Xsqlite3_column_int64(s.c.tls, s.p, int32(i)))
}

// blob returns column i as bytes whatever its storage class (NULL: nil).
func (s *stmt) blob(i int) []byte {
	switch v := s.value(i).(type) {
	case []byte:
		return v
	case string:
		return []byte(v)
	default:
		return nil
	}
}

// cmem converts an address in C memory (libc's heap, never Go's) to a
// pointer. unsafe.Add rather than a conversion: the memory is not Go's, so
// the usual uintptr conversion rules do not apply, and vet cannot tell.
func cmem(p uintptr) unsafe.Pointer { return unsafe.Add(nil, p) }

// cFuncPointer turns a top-level Go function into the function pointer
// representation the transpiled C code calls through (see modernc.org/libc).
func cFuncPointer[T any](f T) uintptr {
	return *(*uintptr)(unsafe.Pointer(&struct{ f T }{f}))
}

func authorizerCallback(_ *libc.TLS, key uintptr, action int32, z1, z2, _, _ uintptr) int32 {
	v, ok := authConns.Load(key)
	if !ok {
		return sqlite3.SQLITE_DENY
	}
	c := v.(*conn)
	if !c.guarded {
		return sqlite3.SQLITE_OK
	}
	str := func(p uintptr) string {
		if p == 0 {
			return ""
		}
		return libc.GoString(p)
	}
	if reason := userSQLPolicy(action, str(z1), str(z2)); reason != "" {
		c.denial = reason
		return sqlite3.SQLITE_DENY
	}
	return sqlite3.SQLITE_OK
}

// internalPrefix names the tables the runtime keeps in each object's
// database. User SQL may neither read nor write them, as on Cloudflare.
const internalPrefix = "_cf_"

func isInternalName(name string) bool {
	return len(name) >= len(internalPrefix) && strings.EqualFold(name[:len(internalPrefix)], internalPrefix)
}

// allowedPragmas are the PRAGMAs user SQL may run: schema introspection,
// checks and foreign key control. The rest (journal_mode, synchronous,
// writable_schema, ...) would undermine durability or the internal tables.
var allowedPragmas = map[string]bool{
	"table_info": true, "table_xinfo": true, "table_list": true,
	"index_info": true, "index_xinfo": true, "index_list": true,
	"foreign_key_list": true, "foreign_key_check": true,
	"foreign_keys": true, "defer_foreign_keys": true,
	"quick_check": true, "integrity_check": true, "optimize": true,
	"case_sensitive_like": true, "legacy_alter_table": true,
	"recursive_triggers": true, "reverse_unordered_selects": true,
	"data_version": true, "collation_list": true, "function_list": true,
	"pragma_list": true, "module_list": true,
}

const transactionAdvice = "use ctx.storage.transactionSync() or ctx.storage.transaction() instead of SQL BEGIN, COMMIT, ROLLBACK or SAVEPOINT statements: they roll back on exceptions and work with the automatic transaction of each event"

// userSQLPolicy returns why SQLite's authorizer should refuse an action of
// user SQL, or "" to allow it.
func userSQLPolicy(action int32, z1, z2 string) string {
	switch action {
	case sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT:
		return transactionAdvice
	case sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH:
		return "ATTACH and DETACH are not allowed"
	case sqlite3.SQLITE_PRAGMA:
		name := strings.ToLower(z1)
		if !allowedPragmas[name] {
			return fmt.Sprintf("pragma %q is not allowed", z1)
		}
		if isInternalName(z2) {
			return fmt.Sprintf("access to %s is prohibited", z2)
		}
	case sqlite3.SQLITE_READ, sqlite3.SQLITE_UPDATE:
		if isInternalName(z1) {
			return fmt.Sprintf("access to %s.%s is prohibited", z1, z2)
		}
	case sqlite3.SQLITE_INSERT, sqlite3.SQLITE_DELETE, sqlite3.SQLITE_ANALYZE,
		sqlite3.SQLITE_CREATE_TABLE, sqlite3.SQLITE_CREATE_TEMP_TABLE,
		sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_DROP_TEMP_TABLE,
		sqlite3.SQLITE_CREATE_VIEW, sqlite3.SQLITE_CREATE_TEMP_VIEW,
		sqlite3.SQLITE_DROP_VIEW, sqlite3.SQLITE_DROP_TEMP_VIEW,
		sqlite3.SQLITE_CREATE_VTABLE, sqlite3.SQLITE_DROP_VTABLE,
		sqlite3.SQLITE_REINDEX:
		if isInternalName(z1) {
			return fmt.Sprintf("access to %s is prohibited", z1)
		}
	case sqlite3.SQLITE_CREATE_INDEX, sqlite3.SQLITE_CREATE_TEMP_INDEX,
		sqlite3.SQLITE_DROP_INDEX, sqlite3.SQLITE_DROP_TEMP_INDEX,
		sqlite3.SQLITE_CREATE_TRIGGER, sqlite3.SQLITE_CREATE_TEMP_TRIGGER,
		sqlite3.SQLITE_DROP_TRIGGER, sqlite3.SQLITE_DROP_TEMP_TRIGGER:
		for _, name := range []string{z1, z2} {
			if isInternalName(name) {
				return fmt.Sprintf("access to %s is prohibited", name)
			}
		}
	case sqlite3.SQLITE_ALTER_TABLE:
		if isInternalName(z2) {
			return fmt.Sprintf("access to %s is prohibited", z2)
		}
	}
	return ""
}
