// Command kubenova-kube is the local Kubernetes control plane: an etcd member embedded in the
// process, and kube-apiserver run in-process against it.
//
// Usage:
//
//	kubenova-kube [launcher flags] -- [kube-apiserver flags]
//
// The launcher flags configure etcd (see etcd.go); everything after "--" is handed unchanged to
// kube-apiserver's own command, plus --etcd-servers pointing at the embedded member. There is no
// kube-controller-manager and no scheduler: the apiserver alone is what Kubenova's operator and
// its tests need (CRDs, validation, RBAC, watches, the `default` namespace the apiserver makes).
//
// SIGINT/SIGTERM stop kube-apiserver gracefully, then etcd, so the data directory stays
// consistent across restarts.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // the apiserver's --logging-format=json
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream's main
	_ "k8s.io/component-base/metrics/prometheus/version"  // the version metric, as upstream's main
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(argv []string) int {
	launcherArgs, apiserverArgs := splitArgs(argv)

	fs := flag.NewFlagSet("kubenova-kube", flag.ContinueOnError)
	opts := bindEtcdFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: kubenova-kube [flags] -- [kube-apiserver flags]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(launcherArgs); err != nil {
		return 2
	}
	for _, a := range apiserverArgs {
		// --etcd-servers is a list flag: a second one would add to ours, not replace it.
		if a == "--etcd-servers" || strings.HasPrefix(a, "--etcd-servers=") {
			fmt.Fprintln(os.Stderr, "kubenova-kube: --etcd-servers is set by the launcher")
			return 2
		}
	}

	// NewAPIServerCommand installs the process's signal handler (it may be installed only once),
	// so build the command first and let etcd's start-up follow the same context.
	cmd := app.NewAPIServerCommand()
	ctx := cmd.Context()

	member, err := startEtcd(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubenova-kube: etcd: %v\n", err)
		return 1
	}
	defer member.stop()

	cmd.SetArgs(append([]string{"--etcd-servers=" + member.clientURL}, apiserverArgs...))
	code := cli.Run(cmd)
	klog.InfoS("kube-apiserver exited", "code", code)
	klog.Flush()
	return code
}

// splitArgs separates the launcher's flags from kube-apiserver's at the first "--".
func splitArgs(argv []string) (launcher, apiserver []string) {
	for i, a := range argv {
		if a == "--" {
			return argv[:i], argv[i+1:]
		}
	}
	return argv, nil
}
