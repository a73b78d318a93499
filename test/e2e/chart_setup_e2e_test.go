//go:build e2e

package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/keeplog/keeplog/test/e2e/framework"
)

// chartLab is the real lab with nothing of keeplog in it but the release a test installs from charts/keeplog
// (framework.SetupLabOnly: no host keeplog serves the same driver name and socket).
type chartLab struct {
	env *framework.Env
	// installed says the release is installed: the cleanup uninstalls it.
	installed bool
	// namespaces hold the test's pods: the cleanup deletes them before it uninstalls the release.
	namespaces []string
}

// setupChartLab starts the lab, creates the release's namespace and registers the cleanup every chart test needs:
// the pods of namespaces deleted first, while keeplog still runs and can unpublish their volumes, then the release
// uninstalled, then the lab torn down.
func setupChartLab(ctx context.Context, t *testing.T, namespaces ...string) *chartLab {
	t.Helper()
	env, err := framework.SetupLabOnly(ctx, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	c := &chartLab{env: env, namespaces: namespaces}
	t.Cleanup(func() {
		if c.installed {
			for _, ns := range c.namespaces {
				if err := deleteNamespacePods(context.Background(), env, ns); err != nil {
					t.Error(err)
				}
			}
			if _, err := env.Helm(context.Background(), "uninstall", chartRelease, "--namespace", chartNamespace, "--wait", "--timeout", "2m"); err != nil {
				t.Error(err)
			}
		}
		if err := env.Teardown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	mustNamespace(ctx, t, env, chartNamespace)
	return c
}

// install imports `make image`'s keeplog image and a csi-provisioner image, installs the chart with the lab's values
// (framework.Env.ChartValuesMap) changed by edit (nil: as they are), and waits until the DaemonSet's pod runs with
// every container ready. It returns that pod and the node port keeplog serves /healthz and /metrics on.
func (c *chartLab) install(ctx context.Context, t *testing.T, edit func(values map[string]any)) (*corev1.Pod, int) {
	t.Helper()
	if err := c.env.ImportChartImages(ctx); err != nil {
		t.Fatal(err)
	}
	values, port, err := c.env.ChartValuesMap()
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(values)
	}
	file, err := c.env.WriteValues("lab-values.yaml", values)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.env.Helm(ctx, "install", chartRelease, filepath.Join(c.env.Repo, "charts", "keeplog"),
		"--namespace", chartNamespace, "--values", file)
	c.installed = err == nil
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("helm install:\n%s", out)
	pod, err := c.env.WaitDaemonSetPod(ctx, chartNamespace, chartSelector, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return pod, port
}
