package main

import (
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Only the binary's own mappings that are read-only and hold no page the
// process wrote are picked.
func TestReadOnlyMappings(t *testing.T) {
	entry := func(head string, rss, anon int) string {
		return head + "\nSize: 64 kB\nRss: " + strconv.Itoa(rss) + " kB\nPrivate_Dirty: 8 kB\nAnonymous: " + strconv.Itoa(anon) + " kB\nVmFlags: rd ex mr mw me\n"
	}
	smaps := strings.Join([]string{
		entry("00400000-00500000 r-xp 00000000 fe:00 42 /bin/sidecar", 12, 0),          // code: picked (dirty in the page cache is no matter)
		entry("00500000-00600000 r--p 00100000 fe:00 42 /bin/sidecar", 8, 0),           // read-only data: picked
		entry("00600000-00610000 rw-p 00200000 fe:00 42 /bin/sidecar", 8, 8),           // data: written
		entry("00610000-00620000 r--p 00210000 fe:00 42 /bin/sidecar", 4, 4),           // relocated, then made read-only
		entry("7f0000000000-7f0000010000 r-xp 00000000 fe:00 43 /lib/libc.so.6", 4, 0), // another file
		entry("7f0000020000-7f0000030000 rw-p 00000000 00:00 0", 4, 4),                 // anonymous
		entry("7f0000040000-7f0000050000 r--s 00000000 fe:00 42 /bin/sidecar", 4, 0),   // shared mapping of the file
		entry("7f0000060000-7f0000070000 r--p 00000000 00:2f 77 /bin/sidecar", 4, 0),   // on overlayfs: the layer's inode, picked by path
		entry("7f0000080000-7f0000090000 r--p 00000000 00:2f 78 /bin/sidecar (deleted)", 4, 0),
	}, "")
	got := readOnlyMappings([]byte(smaps), 42, "/bin/sidecar")
	want := []mapping{{0x400000, 0x500000, 12 << 10}, {0x500000, 0x600000, 8 << 10}, {0x7f0000060000, 0x7f0000070000, 4 << 10}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("readOnlyMappings = %+v, want %+v", got, want)
	}
}

// The test binary unmaps its own pages and runs on: they are mapped again
// from the file as it touches them.
func TestReleaseStartPages(t *testing.T) {
	if n := releaseStartPages(); n <= 0 {
		t.Fatalf("releaseStartPages() = %d bytes, want some: the test binary has mapped pages of itself", n)
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil || !strings.Contains(string(b), "RssFile:") {
		t.Fatalf("the process runs on after unmapping its pages, but reads no status: %v", err)
	}
}
