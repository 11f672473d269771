package storage

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The durability test runs a writer in a child process (this test binary,
// re-executed with crashChildEnv set), which reports each write on stdout
// after the write was acknowledged (Commit or the autocommit call
// returned). The parent SIGKILLs the child at a random moment, reopens the
// store and checks that every acknowledged write is there, that each
// event's writes are all there or all missing, that the alarm index still
// finds every alarm, and that every database passes integrity_check. The
// child then resumes on the crashed state in the next round.

const (
	crashChildEnv = "BERTH_STORAGE_CRASH_DIR"
	crashRoundEnv = "BERTH_STORAGE_CRASH_ROUND"
	crashSeedEnv  = "BERTH_STORAGE_CRASH_SEED"
)

var crashObjects = []string{"obj0", "obj1", "obj2", "obj3", "obj4"}

// crashValue is the value written under key: key bytes repeated to size.
func crashValue(key string, size int) []byte {
	return bytes.Repeat([]byte(key), size/len(key)+1)[:size]
}

// crashAlarm is the alarm set by write i of a round: increasing with i so
// the parent can tell the newest acknowledged one.
func crashAlarm(round, i int) time.Time {
	return time.UnixMilli(2_000_000_000_000 + int64(round)*1_000_000 + int64(i))
}

func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("only runs as the child of TestDurabilityUnderSIGKILL")
	}
	round, _ := strconv.Atoi(os.Getenv(crashRoundEnv))
	seed, _ := strconv.ParseUint(os.Getenv(crashSeedEnv), 10, 64)
	rng := rand.New(rand.NewPCG(seed, uint64(round)))
	s, err := OpenStore(dir, StoreOptions{MaxOpen: 3}) // small: evictions happen mid-run
	if err != nil {
		t.Fatal(err)
	}
	out := os.Stdout // unbuffered: a line written is a line the parent can read
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		obj := crashObjects[rng.IntN(len(crashObjects))]
		db, err := s.Object(ObjectKey{"Crash", obj})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec("CREATE TABLE IF NOT EXISTS log (k TEXT PRIMARY KEY, size INTEGER)"); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("r%d-i%d", round, i)
		size := 1 + rng.IntN(2000)
		if rng.IntN(10) == 0 {
			size = 60_000 + rng.IntN(MaxValueSize-60_000) // big: WAL grows, checkpoints run
		}
		switch mode := rng.IntN(4); mode {
		case 0, 1: // an event: KV + SQL + alarm, one commit
			must(t, db.Begin())
			must(t, db.Put(key, crashValue(key, size)))
			_, err := db.Exec("INSERT INTO log (k, size) VALUES (?, ?)", key, size)
			must(t, err)
			must(t, db.SetAlarm(crashAlarm(round, i)))
			must(t, db.Commit())
			fmt.Fprintf(out, "ack event %s %s %d %d\n", obj, key, size, i)
		case 2: // autocommit KV write
			must(t, db.Put(key, crashValue(key, size)))
			fmt.Fprintf(out, "ack put %s %s %d %d\n", obj, key, size, i)
		case 3: // user transaction outside an event, with SQL and a batch
			must(t, db.Transaction(func() error {
				if _, err := db.Exec("INSERT INTO log (k, size) VALUES (?, ?)", key, size); err != nil {
					return err
				}
				return db.PutMany([]KV{{key, crashValue(key, size)}, {key + "-b", []byte("b")}})
			}))
			fmt.Fprintf(out, "ack tx %s %s %d %d\n", obj, key, size, i)
		}
		db.Close()
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type crashAck struct {
	mode, obj, key string
	size, i, round int
}

func TestDurabilityUnderSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns and kills child processes")
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(crashSeedEnv); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (set %s to repeat)", seed, crashSeedEnv)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	var acks []crashAck
	const rounds = 10
	for round := range rounds {
		killAfter := time.Duration(rng.IntN(400)) * time.Millisecond
		got := runAndKill(t, dir, round, seed, killAfter)
		t.Logf("round %d: killed %v after first ack, %d writes acknowledged", round, killAfter, len(got))
		if len(got) == 0 {
			t.Fatalf("round %d: child acknowledged nothing", round)
		}
		acks = append(acks, got...)
		verifyCrashState(t, dir, acks)
	}
}

// runAndKill starts the child and SIGKILLs it killAfter the first ack.
func runAndKill(t *testing.T, dir string, round int, seed uint64, killAfter time.Duration) []crashAck {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, fmt.Sprintf("%s=%d", crashRoundEnv, round), fmt.Sprintf("%s=%d", crashSeedEnv, seed))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var acks []crashAck
	var kill <-chan time.Time
	timeout := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				err := cmd.Wait()
				if ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() && ws.Signal() == syscall.SIGKILL {
					return acks
				}
				t.Fatalf("child ended by itself (%v):\n%s", err, stderr.String())
			}
			if !strings.HasPrefix(line, "ack ") {
				continue // go test's own output
			}
			var a crashAck
			if _, err := fmt.Sscanf(line, "ack %s %s %s %d %d", &a.mode, &a.obj, &a.key, &a.size, &a.i); err != nil {
				t.Fatalf("bad line %q: %v", line, err)
			}
			a.round = round
			acks = append(acks, a)
			if kill == nil {
				kill = time.After(killAfter)
			}
		case <-kill:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			kill = nil
			// Keep reading: lines already written before the kill are acks too.
		case <-timeout:
			_ = cmd.Process.Kill()
			t.Fatalf("child produced no end:\n%s", stderr.String())
		}
	}
}

func verifyCrashState(t *testing.T, dir string, acks []crashAck) {
	t.Helper()
	s, err := OpenStore(dir, StoreOptions{})
	if err != nil {
		t.Fatalf("reopen store after kill: %v", err)
	}
	defer s.Close()
	if err := s.alarms.db.IntegrityCheck(); err != nil {
		t.Fatal(err)
	}
	byObj := map[string][]crashAck{}
	for _, a := range acks {
		byObj[a.obj] = append(byObj[a.obj], a)
	}
	alarms, err := s.Alarms(time.UnixMilli(1 << 50))
	if err != nil {
		t.Fatal(err)
	}
	indexed := map[string]time.Time{}
	for _, a := range alarms {
		indexed[a.Key.ID] = a.At
	}
	for _, obj := range crashObjects {
		db, err := s.Object(ObjectKey{"Crash", obj})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.IntegrityCheck(); err != nil {
			t.Fatalf("%s: %v", obj, err)
		}
		// Objects the child never reached have no table yet.
		execAll(t, db, "CREATE TABLE IF NOT EXISTS log (k TEXT PRIMARY KEY, size INTEGER)")
		var lastAlarm time.Time
		for _, a := range byObj[obj] {
			v, ok, err := db.Get(a.key)
			if err != nil || !ok || !bytes.Equal(v, crashValue(a.key, a.size)) {
				t.Fatalf("%s: acknowledged %s write %s lost (ok=%v err=%v len=%d)", obj, a.mode, a.key, ok, err, len(v))
			}
			if a.mode == "event" || a.mode == "tx" {
				rows, _ := execAll(t, db, "SELECT size FROM log WHERE k = ?", a.key)
				if len(rows) != 1 || rows[0][0] != int64(a.size) {
					t.Fatalf("%s: acknowledged %s row %s lost: %v", obj, a.mode, a.key, rows)
				}
			}
			if a.mode == "event" {
				lastAlarm = crashAlarm(a.round, a.i)
			}
		}
		// Atomicity, including the write in flight at the kill: every
		// logged key has its KV value and vice versa.
		rows, _ := execAll(t, db, "SELECT k, size FROM log")
		for _, r := range rows {
			k := r[0].(string)
			v, ok, _ := db.Get(k)
			if !ok || len(v) != int(r[1].(int64)) {
				t.Fatalf("%s: row %s without its KV write", obj, k)
			}
		}
		kvs, _ := db.List(ListOptions{})
		logged := map[string]bool{}
		for _, r := range rows {
			logged[r[0].(string)] = true
		}
		for _, kv := range kvs {
			if strings.HasSuffix(kv.Key, "-b") && !logged[strings.TrimSuffix(kv.Key, "-b")] {
				t.Fatalf("%s: batch half %s without its transaction's row", obj, kv.Key)
			}
		}
		at, ok, _ := db.GetAlarm()
		if !lastAlarm.IsZero() {
			if !ok || at.Before(lastAlarm) {
				t.Fatalf("%s: alarm %v, last acknowledged %v", obj, at, lastAlarm)
			}
		}
		if ok && !indexed[obj].Equal(at) {
			t.Fatalf("%s: alarm %v not found through the index (index says %v)", obj, at, indexed[obj])
		}
		db.Close()
	}
}
