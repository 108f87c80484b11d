package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/klog/v2"
)

// etcdOptions are the launcher's own flags: where the single etcd member keeps its data and the
// loopback addresses it listens on.
type etcdOptions struct {
	dataDir      string
	clientURL    string
	peerURL      string
	logLevel     string
	startTimeout time.Duration
	unsafeNoSync bool
}

func bindEtcdFlags(fs *flag.FlagSet) *etcdOptions {
	o := &etcdOptions{}
	fs.StringVar(&o.dataDir, "etcd-data-dir", ".kubenova/etcd", "etcd's data directory")
	fs.StringVar(&o.clientURL, "etcd-client-url", "http://127.0.0.1:2379",
		"URL etcd serves clients on (kube-apiserver is pointed at it); keep it on loopback")
	fs.StringVar(&o.peerURL, "etcd-peer-url", "http://127.0.0.1:2380",
		"URL of etcd's peer listener; a one-member cluster still opens it, so keep it on loopback")
	fs.StringVar(&o.logLevel, "etcd-log-level", "warn", "etcd log level (debug, info, warn, error)")
	fs.DurationVar(&o.startTimeout, "etcd-start-timeout", 60*time.Second,
		"how long to wait for etcd to become ready")
	fs.BoolVar(&o.unsafeNoSync, "etcd-unsafe-no-fsync", false,
		"skip fsync in etcd (faster on slow disks; a crash may lose recent writes)")
	return o
}

// etcdMember is a running embedded etcd.
type etcdMember struct {
	etcd      *embed.Etcd
	clientURL string
}

// startEtcd starts a one-member etcd cluster and returns once it serves clients. It refuses
// non-loopback listeners because the member has no TLS and no authentication: anything that
// can reach it can rewrite the whole cluster state.
func startEtcd(ctx context.Context, o *etcdOptions) (*etcdMember, error) {
	client, err := loopbackURL(o.clientURL)
	if err != nil {
		return nil, fmt.Errorf("--etcd-client-url: %w", err)
	}
	peer, err := loopbackURL(o.peerURL)
	if err != nil {
		return nil, fmt.Errorf("--etcd-peer-url: %w", err)
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return nil, err
	}

	cfg := embed.NewConfig()
	cfg.Name = "kubenova"
	cfg.Dir = o.dataDir
	cfg.ListenClientUrls = []url.URL{*client}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	cfg.ListenPeerUrls = []url.URL{*peer}
	cfg.AdvertisePeerUrls = []url.URL{*peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = o.logLevel
	cfg.LogOutputs = []string{"stderr"}
	cfg.UnsafeNoFsync = o.unsafeNoSync
	// kube-apiserver compacts etcd itself (--etcd-compaction-interval), as it does against a
	// standalone etcd, so etcd's own auto-compaction stays off.

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	timer := time.NewTimer(o.startTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		if err == nil {
			err = errors.New("stopped while starting")
		}
		return nil, err
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("not ready after %s", o.startTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, errors.New("interrupted while starting")
	}

	// etcd failing later leaves kube-apiserver unable to do anything useful; exit so whoever
	// watches the process sees it, rather than serving errors forever.
	// The channel is closed once etcd is over; a nil on it only means one listener ended.
	go func() {
		for err := range e.Err() {
			if err != nil {
				klog.ErrorS(err, "embedded etcd failed")
				klog.Flush()
				os.Exit(1)
			}
		}
	}()
	klog.InfoS("embedded etcd ready", "client", client.String(), "dataDir", o.dataDir)
	return &etcdMember{etcd: e, clientURL: client.String()}, nil
}

// stop closes etcd. etcd logs each listener it closes as an error ("use of closed network
// connection", "http: Server closed"); those lines are part of a normal shutdown.
func (m *etcdMember) stop() {
	m.etcd.Close()
	klog.InfoS("embedded etcd stopped")
	klog.Flush()
}

func loopbackURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("%q: only http:// on loopback is supported", raw)
	}
	switch u.Hostname() {
	case "127.0.0.1", "::1", "localhost":
		return u, nil
	}
	return nil, fmt.Errorf("%q is not a loopback address", raw)
}
