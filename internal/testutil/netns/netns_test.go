package netns

import (
	"net"
	"os/exec"
	"strings"
	"testing"
)

// Two namespaces reach the test; Cut stops one's traffic to the test and
// Heal brings it back, the other untouched; when the test ends its
// namespaces and link are gone.
func TestCutHealRemove(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is needed to connect from a namespace")
	}
	var names []string
	var link string
	t.Run("network", func(t *testing.T) {
		n := New(t)
		a, b := n.Add("a"), n.Add("b")
		names, link = []string{n.sw, a.Name, b.Name}, n.host
		l, err := net.Listen("tcp", n.HostIP()+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		reaches := func(ns *Namespace) bool {
			return ns.Command("timeout", "2", "bash", "-c", "exec 3<>/dev/tcp/"+strings.Replace(l.Addr().String(), ":", "/", 1)).Run() == nil
		}
		if !reaches(a) || !reaches(b) {
			t.Fatal("a namespace does not reach the test")
		}
		n.Cut(a, &Namespace{IP: n.HostIP()})
		if reaches(a) {
			t.Error("a reaches the test across a Cut")
		}
		if !reaches(b) {
			t.Error("b does not reach the test after a was cut off")
		}
		n.Heal(a)
		if !reaches(a) {
			t.Error("a does not reach the test after Heal")
		}
	})
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if strings.Contains(string(out), name) {
			t.Errorf("namespace %s left after the test", name)
		}
	}
	if link != "" && linkExists(link) {
		t.Errorf("link %s left after the test", link)
	}
}
