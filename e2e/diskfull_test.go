package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"ordercore/cli"
)

// diskFullFSBytes is the size of the filesystem the disk-full test runs on: room for the
// database and a few thousand orders, small enough to fill in a moment.
const diskFullFSBytes = 16 << 20

// TestDiskFull runs the real server on a small tmpfs and fills it. While the disk is full
// every order must be refused with 503 (never answered 201 and lost); reads keep
// working; once space is freed, orders succeed again without a restart; and after a
// restart every order ever answered 201 is there and verify passes.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("disk-full test skipped in -short mode")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", diskFullFSBytes), "tmpfs", dir).CombinedOutput(); err != nil {
		msg := fmt.Sprintf("cannot mount a tmpfs (needs root and mount rights): %v %s", err, bytes.TrimSpace(out))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	data := filepath.Join(dir, "data")

	s := startServer(t, data)
	a := s.api
	if r, err := a.do("POST", "/v1/skus", createSKUReq{ID: "a", Name: "A", Price: wireMoney{Amount: 500, Currency: "USD"}, Stock: 1_000_000}, ""); err != nil || r.status != 201 {
		t.Fatalf("create sku: %v %v", r, err)
	}
	acked := map[string]bool{}
	place := func() reply {
		r, err := a.do("POST", "/v1/orders", placeReq{UserID: "u1", Lines: []lineReq{{SKU: "a", Quantity: 1}}}, "")
		if err != nil {
			t.Fatalf("place order: %v", err)
		}
		if r.status == 201 {
			var o wireOrder
			mustDecode(t, r.body, &o)
			acked[o.ID] = true
		}
		return r
	}
	for range 50 {
		if r := place(); r.status != 201 {
			t.Fatalf("before the disk fills: %v", r)
		}
	}

	// Fill the filesystem, then keep ordering: each order must be 201 (the write fit in
	// what was left) or 503 unavailable, until the refusals start.
	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)
	refused := 0
	for i := 0; i < 2000 && refused < 20; i++ {
		r := place()
		switch {
		case r.status == 201:
		case r.status == 503 && r.problem().Code == "unavailable":
			if refused == 0 {
				t.Logf("first refusal: %v", r)
			}
			refused++
		default:
			t.Fatalf("with the disk full: %v", r)
		}
	}
	if refused == 0 {
		t.Fatal("the disk never filled up: no order was refused")
	}
	var sku wireSKU
	if err := a.getJSON("/v1/skus/a", &sku); err != nil {
		t.Fatalf("read with the disk full: %v", err)
	}
	if int(sku.Reserved) != len(acked) {
		t.Fatalf("with the disk full, reserved = %d but %d orders were answered 201", sku.Reserved, len(acked))
	}

	// Free the space: the same process takes orders again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if r := place(); r.status != 201 {
			t.Fatalf("after freeing space: %v", r)
		}
	}
	if code, err := s.stop(); err != nil || code != 0 {
		t.Fatalf("graceful stop: exit %d, %v\n%s", code, err, s.output)
	}

	// Restart: every acknowledged order is there, and the database is sound.
	s = startServer(t, data)
	for id := range acked {
		var o wireOrder
		if err := s.api.getJSON("/v1/orders/"+id, &o); err != nil {
			t.Fatalf("order %s answered 201 is gone after the disk filled: %v", id, err)
		}
	}
	if code, err := s.stop(); err != nil || code != 0 {
		t.Fatalf("graceful stop: exit %d, %v", code, err)
	}
	var out, errb bytes.Buffer
	if code := cli.Main(context.Background(), []string{"verify", "--as-of", "last-event", "--db", filepath.Join(data, "ordercore.db")}, &out, &errb); code != 0 {
		t.Fatalf("verify exit %d:\n%s%s", code, out.String(), errb.String())
	}
	t.Logf("%d orders acknowledged, %d refused while the disk was full", len(acked), refused)
}

// fillDisk writes to path until the filesystem holding it has no space left.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for written := 0; written < diskFullFSBytes*2; written += len(chunk) {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
	t.Fatal("wrote twice the filesystem's size without filling it")
}

func mustDecode(t *testing.T, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
}
