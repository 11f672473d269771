package worker

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
)

func benchWorker(b *testing.B, src, path string, want string) {
	w, _ := newWorker(b, src, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	req := httptest.NewRequest("GET", "http://bench.example"+path, nil)
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, req)
	if rec.Body.String() != want {
		b.Fatalf("body %q, want %q", rec.Body.String(), want)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}

func BenchmarkHelloWorld(b *testing.B) {
	benchWorker(b, helloWorldScript, "/", "Hello World!")
}

func BenchmarkRouter(b *testing.B) {
	benchWorker(b, routerScript, "/api/users?id=42", `{"id":42,"name":"user42","tags":["a","b"]}`)
}
