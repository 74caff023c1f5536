package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// serviceProxy does in user space what kube-proxy does for ClusterIP
// Services. The iptables rules of redirectRules send TCP for the service
// range to its listeners; for each connection it reads the original
// destination (SO_ORIGINAL_DST), finds the Service with that cluster IP and
// port, picks one of its ready endpoints at random (another if it refuses)
// and relays the bytes. A Service without a ready endpoint has its
// connection closed at once.
type serviceProxy struct {
	lns       []net.Listener
	slices    discoverylisters.EndpointSliceLister
	byIP      cache.Indexer
	logf      func(string, ...any)
	wg        sync.WaitGroup
	closeOnce sync.Once
}

const byClusterIP = "clusterIP"

// startServiceProxy starts the proxy's listeners (on the bridge address for
// pods, on loopback for this host, one port for both), its watches, and
// the redirect rules.
func startServiceProxy(ctx context.Context, client kubernetes.Interface, logf func(string, ...any)) (*serviceProxy, error) {
	f := informers.NewSharedInformerFactory(client, 0)
	svcInf := f.Core().V1().Services()
	if err := svcInf.Informer().AddIndexers(cache.Indexers{byClusterIP: func(obj any) ([]string, error) {
		return obj.(*corev1.Service).Spec.ClusterIPs, nil
	}}); err != nil {
		return nil, err
	}
	p := &serviceProxy{
		slices: f.Discovery().V1().EndpointSlices().Lister(),
		byIP:   svcInf.Informer().GetIndexer(),
		logf:   logf,
	}
	f.Start(ctx.Done())
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("service proxy: no %v from the API server", typ)
		}
	}
	ln, err := net.Listen("tcp", BridgeIP+":0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	p.lns = append(p.lns, ln)
	lo, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		ln.Close()
		return nil, err
	}
	p.lns = append(p.lns, lo)
	for _, l := range p.lns {
		p.wg.Add(1)
		go p.serve(l)
	}
	if err := addRules(redirectRules(port)); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *serviceProxy) serve(ln net.Listener) {
	defer p.wg.Done()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go p.relay(conn.(*net.TCPConn))
	}
}

// close stops accepting; relayed connections run on until either side
// closes.
func (p *serviceProxy) close() {
	p.closeOnce.Do(func() {
		for _, l := range p.lns {
			l.Close()
		}
		p.wg.Wait()
	})
}

func (p *serviceProxy) relay(in *net.TCPConn) {
	defer in.Close()
	dst, err := originalDst(in)
	if err != nil {
		p.logf("service proxy: %v", err)
		return
	}
	targets, err := p.endpoints(dst)
	if err != nil {
		p.logf("service proxy: %v", err)
		return
	}
	// As kube-proxy's user-space mode did: an endpoint that refuses (a pod
	// going away before its endpoint is gone) is passed over for another.
	var out net.Conn
	for _, target := range targets[:min(len(targets), 3)] {
		if out, err = net.DialTimeout("tcp", target, 5*time.Second); err == nil {
			break
		}
		p.logf("service proxy: %s -> %s: %v", dst, target, err)
	}
	if out == nil {
		return
	}
	defer out.Close()
	done := make(chan struct{}, 2)
	pipe := func(to, from net.Conn) {
		_, _ = io.Copy(to, from)
		if tc, ok := to.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	<-done
}

// endpoints are the ready endpoints (ip:port) of the Service at dst, in a
// random order.
func (p *serviceProxy) endpoints(dst netip.AddrPort) ([]string, error) {
	objs, err := p.byIP.ByIndex(byClusterIP, dst.Addr().String())
	if err != nil || len(objs) == 0 {
		return nil, fmt.Errorf("no Service has cluster IP %s", dst.Addr())
	}
	svc := objs[0].(*corev1.Service)
	var port *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if sp := &svc.Spec.Ports[i]; sp.Port == int32(dst.Port()) && (sp.Protocol == corev1.ProtocolTCP || sp.Protocol == "") {
			port = sp
		}
	}
	if port == nil {
		return nil, fmt.Errorf("Service %s/%s has no TCP port %d", svc.Namespace, svc.Name, dst.Port())
	}
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc.Name})
	slices, err := p.slices.EndpointSlices(svc.Namespace).List(sel)
	if err != nil {
		return nil, err
	}
	var ready []string
	for _, s := range slices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		var target int32
		for _, ep := range s.Ports {
			if ep.Port != nil && (ep.Name == nil && port.Name == "" || ep.Name != nil && *ep.Name == port.Name) {
				target = *ep.Port
			}
		}
		if target == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, a := range e.Addresses {
				ready = append(ready, net.JoinHostPort(a, strconv.Itoa(int(target))))
			}
		}
	}
	if len(ready) == 0 {
		return nil, fmt.Errorf("Service %s/%s port %d has no ready endpoint", svc.Namespace, svc.Name, dst.Port())
	}
	rand.Shuffle(len(ready), func(i, j int) { ready[i], ready[j] = ready[j], ready[i] })
	return ready, nil
}

// soOriginalDst is SO_ORIGINAL_DST (linux/netfilter_ipv4.h): the
// destination a connection had before a NAT rule redirected it.
const soOriginalDst = 80

func originalDst(c *net.TCPConn) (netip.AddrPort, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var sa *syscall.IPv6Mreq // a 20-byte buffer: sockaddr_in fits in it
	var serr error
	if err := raw.Control(func(fd uintptr) {
		sa, serr = syscall.GetsockoptIPv6Mreq(int(fd), syscall.SOL_IP, soOriginalDst)
	}); err != nil {
		return netip.AddrPort{}, err
	}
	if serr != nil {
		return netip.AddrPort{}, fmt.Errorf("SO_ORIGINAL_DST of a connection from %s: %w", c.RemoteAddr(), serr)
	}
	b := sa.Multiaddr
	port := binary.BigEndian.Uint16(b[2:4])
	addr, ok := netip.AddrFromSlice(b[4:8])
	if !ok {
		return netip.AddrPort{}, errors.New("SO_ORIGINAL_DST: not an IPv4 address")
	}
	return netip.AddrPortFrom(addr, port), nil
}
