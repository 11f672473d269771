package storage

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// Sentinel errors. Operations wrap them with context
// (fmt.Errorf("put key %q: %w", key, ErrInvalid)); callers test with
// errors.Is. The generic classes are containerd's errdefs, as in package
// container, so one HTTP mapping serves both.
var (
	ErrInvalid  = errdefs.ErrInvalidArgument
	ErrNotFound = errdefs.ErrNotFound

	// ErrClosed: the database or store was closed.
	ErrClosed error = &classified{"storage is closed", errdefs.ErrUnavailable}
	// ErrForbidden: user SQL touched something only the runtime may touch
	// (the internal _cf_ tables, transaction statements, ATTACH, most
	// PRAGMAs). The message ends like Cloudflare's: "...: SQLITE_AUTH".
	ErrForbidden error = &classified{"SQLITE_AUTH", errdefs.ErrPermissionDenied}
	// ErrTxState: a transaction call that does not fit the current state,
	// e.g. Commit with no event transaction open.
	ErrTxState error = &classified{"transaction state does not allow this", errdefs.ErrFailedPrecondition}
	// ErrSQL: SQLite rejected a statement; the wrapping *SQLiteError carries
	// SQLite's own message and result code.
	ErrSQL error = &classified{"sqlite error", errdefs.ErrUnknown}
)

type classified struct {
	msg   string
	class error
}

func (e *classified) Error() string { return e.msg }
func (e *classified) Unwrap() error { return e.class }

// SQLiteError is an error reported by SQLite. Its message is SQLite's own
// (sqlite3_errmsg), followed by the primary result code's name, which is
// the form Cloudflare's runtime shows ("no such table: t: SQLITE_ERROR").
type SQLiteError struct {
	Code    int    // extended result code
	Message string // sqlite3_errmsg
}

func (e *SQLiteError) Error() string {
	return fmt.Sprintf("%s: %s", e.Message, resultCodeName(e.Code))
}

// Unwrap makes every SQLite error match ErrSQL; constraint violations also
// match errdefs' conflict class so callers can tell them apart.
func (e *SQLiteError) Unwrap() []error {
	if e.Code&0xff == sqliteConstraint {
		return []error{ErrSQL, errdefs.ErrConflict}
	}
	return []error{ErrSQL}
}

const sqliteConstraint = 19

func resultCodeName(code int) string {
	names := [...]string{
		0: "SQLITE_OK", 1: "SQLITE_ERROR", 2: "SQLITE_INTERNAL", 3: "SQLITE_PERM",
		4: "SQLITE_ABORT", 5: "SQLITE_BUSY", 6: "SQLITE_LOCKED", 7: "SQLITE_NOMEM",
		8: "SQLITE_READONLY", 9: "SQLITE_INTERRUPT", 10: "SQLITE_IOERR",
		11: "SQLITE_CORRUPT", 12: "SQLITE_NOTFOUND", 13: "SQLITE_FULL",
		14: "SQLITE_CANTOPEN", 15: "SQLITE_PROTOCOL", 16: "SQLITE_EMPTY",
		17: "SQLITE_SCHEMA", 18: "SQLITE_TOOBIG", 19: "SQLITE_CONSTRAINT",
		20: "SQLITE_MISMATCH", 21: "SQLITE_MISUSE", 22: "SQLITE_NOLFS",
		23: "SQLITE_AUTH", 24: "SQLITE_FORMAT", 25: "SQLITE_RANGE",
		26: "SQLITE_NOTADB",
	}
	if p := code & 0xff; p < len(names) && names[p] != "" {
		return names[p]
	}
	return fmt.Sprintf("SQLITE_%d", code)
}
