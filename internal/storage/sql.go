package storage

import (
	"fmt"

	"modernc.org/libc"
)

// Cursor is the result of Exec: the rows of the query's last statement,
// read lazily, as Cloudflare's SqlStorageCursor.
//
// Counters (approximate, as Cloudflare's are billing estimates):
//   - RowsWritten: rows inserted, updated or deleted by all statements of
//     the query, including by triggers and foreign key actions (SQLite's
//     total_changes). Final when Exec returns.
//   - RowsRead: summed over the statements, the largest of: rows the
//     statement returned, steps of full table scans it made, rows it
//     changed. It grows as the cursor is read. Index lookups that return
//     nothing and aggregates computed from an index count less than
//     Cloudflare's storage-engine count would.
type Cursor struct {
	d    *DB
	s    *stmt // nil once done
	cols []string
	row  []any
	next []any // first row, read by Exec, not yet delivered
	err  error

	readBefore  int64 // rows read by the statements before the last
	returned    int64 // rows returned by the last statement
	changed     int64 // rows changed by the last statement
	rowsRead    int64
	rowsWritten int64
}

// Exec runs a query of one or more SQL statements with positional
// bindings (?, ?NNN; each statement takes the next bindings, as many as it
// has parameters). All statements but the last run to completion; the last
// runs until its first row, and its rows are read through the Cursor.
// The query is atomic: if a statement fails, the query's writes are undone.
//
// Bindings: nil, string, []byte, bool, integers, float32/float64. Row
// values: int64, float64, string, []byte or nil.
//
// User SQL may not touch tables whose names start with _cf_ (the runtime's),
// nor use BEGIN/COMMIT/ROLLBACK/SAVEPOINT, ATTACH/DETACH or PRAGMAs outside
// a small allow-list: those fail with ErrForbidden. SQLite's own errors come
// back as *SQLiteError (matching ErrSQL).
func (d *DB) Exec(query string, args ...any) (*Cursor, error) {
	if err := d.lock(); err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	cur, err := d.execLocked(query, args)
	if err != nil {
		return nil, err
	}
	if cur.s != nil {
		d.cursors[cur] = struct{}{}
	}
	return cur, nil
}

func (d *DB) execLocked(query string, args []any) (*Cursor, error) {
	csql, err := libc.CString(query)
	if err != nil {
		return nil, err
	}
	defer libc.Xfree(d.c.tls, csql)
	if err := d.c.exec("SAVEPOINT _cf_exec"); err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	changesBefore := d.c.totalChanges()
	cur := &Cursor{d: d}
	fail := func(err error) (*Cursor, error) {
		d.c.guarded = false
		if cur.s != nil {
			cur.s.finalize()
			cur.s = nil
		}
		_ = d.c.exec("ROLLBACK TO _cf_exec; RELEASE _cf_exec")
		_ = d.refreshSchemaFlags()
		d.settleAlarmIndex()
		return nil, err
	}
	d.c.guarded = true
	defer func() { d.c.guarded = false }()

	used := 0
	tail := csql
	statements := 0
	for {
		s, next, err := d.c.prepare(tail, false)
		if err != nil {
			return fail(err)
		}
		tail = next
		if s == nil {
			if onlyTrivia(tail) {
				break
			}
			continue
		}
		statements++
		n := s.paramCount()
		if used+n > len(args) {
			s.finalize()
			return fail(fmt.Errorf("exec: statement %d needs %d binding(s), only %d left of %d: %w",
				statements, n, len(args)-used, len(args), ErrInvalid))
		}
		if err := s.bind(args[used : used+n]...); err != nil {
			s.finalize()
			return fail(fmt.Errorf("exec: statement %d: %w", statements, err))
		}
		used += n
		last := onlyTrivia(tail)
		before := d.c.totalChanges()
		cur.s = s
		cur.returned = 0
		row, err := s.step()
		if err != nil {
			return fail(err)
		}
		cur.changed = d.c.totalChanges() - before
		if last {
			if row {
				cur.next = cur.readRow()
				cur.returned = 1
			}
			cur.cols = make([]string, s.columnCount())
			for i := range cur.cols {
				cur.cols[i] = s.columnName(i)
			}
			if !row {
				cur.closeStmt()
			}
			break
		}
		for row {
			cur.returned++
			if row, err = s.step(); err != nil {
				return fail(err)
			}
		}
		cur.changed = d.c.totalChanges() - before
		cur.closeStmt()
		cur.readBefore = cur.rowsRead
		if onlyTrivia(tail) {
			break
		}
	}
	if used != len(args) {
		return fail(fmt.Errorf("exec: %d binding(s) given, the query has %d parameter(s): %w", len(args), used, ErrInvalid))
	}
	if cur.cols == nil {
		cur.cols = []string{}
	}
	cur.rowsWritten = d.c.totalChanges() - changesBefore
	cur.updateRead()
	d.c.guarded = false
	if err := d.c.exec("RELEASE _cf_exec"); err != nil {
		return fail(err)
	}
	d.settleAlarmIndex()
	return cur, nil
}

// onlyTrivia reports whether the C string at p holds nothing but
// whitespace, comments and semicolons, i.e. no further statement.
func onlyTrivia(p uintptr) bool {
	at := func(i uintptr) byte { return *(*byte)(cmem(p + i)) }
	for i := uintptr(0); ; {
		switch c := at(i); {
		case c == 0:
			return true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == ';':
			i++
		case c == '-' && at(i+1) == '-':
			for at(i) != 0 && at(i) != '\n' {
				i++
			}
		case c == '/' && at(i+1) == '*':
			i += 2
			for at(i) != 0 && !(at(i) == '*' && at(i+1) == '/') {
				i++
			}
			if at(i) != 0 {
				i += 2
			}
		default:
			return false
		}
	}
}

func (c *Cursor) readRow() []any {
	n := c.s.columnCount()
	row := make([]any, n)
	for i := range row {
		row[i] = c.s.value(i)
	}
	return row
}

func (c *Cursor) updateRead() {
	r := c.returned
	if c.s != nil {
		// The counter counts moves to a next row; the scan's first row
		// is reached by a rewind, which it does not count.
		if f := c.s.fullScanSteps(); f > 0 && f+1 > r {
			r = f + 1
		}
	}
	if c.changed > r {
		r = c.changed
	}
	c.rowsRead = c.readBefore + r
}

// closeStmt finalizes the current statement after folding its full-scan
// count into the counters.
func (c *Cursor) closeStmt() {
	if c.s == nil {
		return
	}
	c.updateRead()
	c.readBefore = c.rowsRead
	c.returned, c.changed = 0, 0
	c.s.finalize()
	c.s = nil
}

// Columns are the column names of the last statement's result.
func (c *Cursor) Columns() []string { return c.cols }

// Next advances to the next row; false at the end or on error (see Err).
func (c *Cursor) Next() bool {
	c.row = nil
	if c.next != nil {
		c.row, c.next = c.next, nil
		return true
	}
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.s == nil {
		return false
	}
	if d.closed {
		c.finish(ErrClosed)
		return false
	}
	d.c.guarded = true
	row, err := c.s.step()
	d.c.guarded = false
	if err != nil {
		c.finish(err)
		return false
	}
	if !row {
		c.finish(nil)
		return false
	}
	c.returned++
	c.row = c.readRow()
	c.updateRead()
	return true
}

// finish ends the cursor; caller holds d.mu.
func (c *Cursor) finish(err error) {
	if c.err == nil {
		c.err = err
	}
	c.closeStmt()
	delete(c.d.cursors, c)
}

// Row is the current row: one value per column.
func (c *Cursor) Row() []any { return c.row }

// Err is the error that ended iteration, if any.
func (c *Cursor) Err() error { return c.err }

// RowsRead and RowsWritten: see Cursor.
func (c *Cursor) RowsRead() int64    { return c.rowsRead }
func (c *Cursor) RowsWritten() int64 { return c.rowsWritten }

// Close releases the cursor's statement; reading stops. Idempotent.
func (c *Cursor) Close() error {
	c.next = nil
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.s != nil {
		c.finish(nil)
	}
	return nil
}

// All reads the remaining rows (toArray).
func (c *Cursor) All() ([][]any, error) {
	rows := [][]any{}
	for c.Next() {
		rows = append(rows, c.Row())
	}
	return rows, c.Err()
}
