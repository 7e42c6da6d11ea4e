// Package kubernetes_test checks the Kubernetes manifests in this directory without a cluster:
// every document named by kustomization.yaml decodes strictly (unknown or duplicate fields
// refused) into the typed objects of k8s.io/api, and the references between objects resolve
// (selectors, named ports, volumes, ConfigMaps and Secrets mounted). It is its own Go module so
// that the Kubernetes API types never enter the passport module's dependencies.
package kubernetes_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// manifests holds every object of the kustomization, by kind.
type manifests struct {
	namespaces   []*corev1.Namespace
	configMaps   map[string]*corev1.ConfigMap
	deployments  []*appsv1.Deployment
	statefulSets []*appsv1.StatefulSet
	services     []*corev1.Service
	pdbs         []*policyv1.PodDisruptionBudget
	netpols      []*networkingv1.NetworkPolicy
	images       []kustomizeImage // kustomization.yaml's images: overrides
}

// kustomizeImage is one entry of a kustomization's images list.
type kustomizeImage struct {
	Name   string `json:"name"`
	NewTag string `json:"newTag,omitempty"`
	Digest string `json:"digest,omitempty"`
}

// workload is the part of a Deployment or StatefulSet the cross-reference checks need.
type workload struct {
	kind, name string
	selector   *metav1.LabelSelector
	template   corev1.PodTemplateSpec
	claims     []string // a StatefulSet's volumeClaimTemplates: volumes too
}

func (m *manifests) workloads() []workload {
	var w []workload
	for _, d := range m.deployments {
		w = append(w, workload{kind: "Deployment", name: d.Name, selector: d.Spec.Selector, template: d.Spec.Template})
	}
	for _, s := range m.statefulSets {
		var claims []string
		for _, c := range s.Spec.VolumeClaimTemplates {
			claims = append(claims, c.Name)
		}
		w = append(w, workload{kind: "StatefulSet", name: s.Name, selector: s.Spec.Selector, template: s.Spec.Template, claims: claims})
	}
	return w
}

// operatorConfigMaps are ConfigMaps the operator creates for their site (like the Secrets
// docs/DEPLOY.md lists), so no manifest here defines them.
var operatorConfigMaps = map[string]bool{
	"passport-issuer-ca": true, // the issuer's CA certificate (relying-party-sidecar.yaml)
}

// load reads kustomization.yaml and decodes every document of every resource it lists.
func load(t *testing.T) *manifests {
	t.Helper()
	var k struct {
		APIVersion string           `json:"apiVersion"`
		Kind       string           `json:"kind"`
		Namespace  string           `json:"namespace"`
		Resources  []string         `json:"resources"`
		Images     []kustomizeImage `json:"images"`
	}
	raw, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(raw, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.Kind != "Kustomization" || len(k.Resources) == 0 {
		t.Fatalf("kustomization.yaml: kind %q with %d resources", k.Kind, len(k.Resources))
	}
	listed := map[string]bool{}
	m := &manifests{configMaps: map[string]*corev1.ConfigMap{}, images: k.Images}
	for _, res := range k.Resources {
		listed[res] = true
		data, err := os.ReadFile(res)
		if err != nil {
			t.Fatalf("kustomization.yaml lists %s: %v", res, err)
		}
		r := utilyaml.NewYAMLReader(bufioReader(data))
		for i := 0; ; i++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s document %d: %v", res, i, err)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			m.add(t, res, i, doc)
		}
	}
	// Every manifest in the directory is part of the kustomization: a file left out of it
	// would never be applied by `kubectl apply -k`.
	files, _ := filepath.Glob("*.yaml")
	for _, f := range files {
		if f != "kustomization.yaml" && !listed[f] {
			t.Errorf("%s is not listed in kustomization.yaml", f)
		}
	}
	return m
}

// add decodes one document strictly into the type its apiVersion and kind name.
func (m *manifests) add(t *testing.T, file string, i int, doc []byte) {
	t.Helper()
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		t.Fatalf("%s document %d: %v", file, i, err)
	}
	strict := func(obj any) {
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Errorf("%s document %d (%s %s): %v", file, i, tm.APIVersion, tm.Kind, err)
		}
	}
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Namespace":
		o := &corev1.Namespace{}
		strict(o)
		m.namespaces = append(m.namespaces, o)
	case "v1 ConfigMap":
		o := &corev1.ConfigMap{}
		strict(o)
		m.configMaps[o.Name] = o
	case "apps/v1 Deployment":
		o := &appsv1.Deployment{}
		strict(o)
		m.deployments = append(m.deployments, o)
	case "apps/v1 StatefulSet":
		o := &appsv1.StatefulSet{}
		strict(o)
		m.statefulSets = append(m.statefulSets, o)
	case "v1 Service":
		o := &corev1.Service{}
		strict(o)
		m.services = append(m.services, o)
	case "policy/v1 PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		strict(o)
		m.pdbs = append(m.pdbs, o)
	case "networking.k8s.io/v1 NetworkPolicy":
		o := &networkingv1.NetworkPolicy{}
		strict(o)
		m.netpols = append(m.netpols, o)
	default:
		t.Errorf("%s document %d: unexpected %s %s (add it to this check)", file, i, tm.APIVersion, tm.Kind)
	}
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m := load(t)
	if len(m.deployments) == 0 || len(m.services) == 0 {
		t.Fatalf("decoded %d Deployments and %d Services", len(m.deployments), len(m.services))
	}
}

// TestImagesPinned: no container runs a floating tag (none, or latest), whose content changes
// under the operator between two rollouts of the same manifests, and passport's own image is
// set in one place, kustomization.yaml's images list, with a pinned tag or a digest.
func TestImagesPinned(t *testing.T) {
	m := load(t)
	pinned := map[string]bool{}
	for _, im := range m.images {
		if im.Digest == "" && (im.NewTag == "" || im.NewTag == "latest") {
			t.Errorf("kustomization.yaml images: %s has no pinned tag or digest", im.Name)
		}
		pinned[im.Name] = true
	}
	seen := false
	for _, w := range m.workloads() {
		for _, c := range append(w.template.Spec.InitContainers, w.template.Spec.Containers...) {
			name, tag := c.Image, ""
			if i := strings.LastIndex(c.Image, ":"); i > strings.LastIndex(c.Image, "/") {
				name, tag = c.Image[:i], c.Image[i+1:]
			}
			if !strings.Contains(c.Image, "@sha256:") && (tag == "" || tag == "latest") {
				t.Errorf("%s %s container %s: image %q has a floating tag", w.kind, w.name, c.Name, c.Image)
			}
			if name == "ghcr.io/passport-attest/passport" {
				seen = true
				if !pinned[name] {
					t.Errorf("%s %s: %s is not in kustomization.yaml's images list", w.kind, w.name, name)
				}
			}
		}
	}
	if !seen {
		t.Error("no container runs ghcr.io/passport-attest/passport")
	}
}

// TestIssuerDeployment checks what docs/DEPLOY.md promises of the issuer: two replicas, a
// PodDisruptionBudget, probes on /healthz and /readyz, non-root and read-only.
func TestIssuerDeployment(t *testing.T) {
	m := load(t)
	var issuer *appsv1.Deployment
	for _, d := range m.deployments {
		if d.Name == "passport-issuer" {
			issuer = d
		}
	}
	if issuer == nil {
		t.Fatal("no passport-issuer Deployment")
	}
	if issuer.Spec.Replicas == nil || *issuer.Spec.Replicas != 2 {
		t.Errorf("issuer replicas = %v, want 2", issuer.Spec.Replicas)
	}
	covered := false
	for _, p := range m.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err == nil && sel.Matches(labels.Set(issuer.Spec.Template.Labels)) {
			covered = true
		}
	}
	if !covered {
		t.Error("no PodDisruptionBudget selects the issuer's pods")
	}
	c := issuer.Spec.Template.Spec.Containers[0]
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("issuer liveness probe = %+v, want GET /healthz", c.LivenessProbe)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("issuer readiness probe = %+v, want GET /readyz", c.ReadinessProbe)
	}
}

// TestIssuerRequiresPersistentRedis: the Redis here keeps an append-only file fsynced on every
// write (appendonly yes, appendfsync always), so the issuer runs with
// --require-persistent-redis, as docs/DEPLOY.md asks of production (that flag refuses a Redis
// without AOF, and serve warns about any appendfsync but always): a Redis restarted without
// its data, or rolled back, would otherwise only be warned about at start.
func TestIssuerRequiresPersistentRedis(t *testing.T) {
	m := load(t)
	rc := m.configMaps["passport-redis"]
	if rc == nil || !strings.Contains(rc.Data["redis.conf"], "appendonly yes") || !strings.Contains(rc.Data["redis.conf"], "appendfsync always") {
		t.Fatal("passport-redis ConfigMap lacks appendonly yes or appendfsync always")
	}
	for _, d := range m.deployments {
		if d.Name != "passport-issuer" {
			continue
		}
		c := d.Spec.Template.Spec.Containers[0]
		if !slices.Contains(c.Args, "--require-persistent-redis") {
			t.Errorf("issuer args %q lack --require-persistent-redis", c.Args)
		}
		return
	}
	t.Fatal("no passport-issuer Deployment")
}

// TestReferencesResolve checks the links a typo breaks silently until the cluster runs it:
// selectors match their template, Services select a workload and target a port it names,
// probes name declared ports, every volume mount has a volume, every ConfigMap volume exists
// here, and every container runs as non-root without privilege escalation.
func TestReferencesResolve(t *testing.T) {
	m := load(t)
	ws := m.workloads()
	for _, w := range ws {
		sel, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(w.template.Labels)) {
			t.Errorf("%s %s: selector %v does not match its pod template labels %v (%v)", w.kind, w.name, w.selector, w.template.Labels, err)
		}
		pod := w.template.Spec
		if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
			t.Errorf("%s %s: pod does not set runAsNonRoot", w.kind, w.name)
		}
		volumes := map[string]bool{}
		for _, c := range w.claims {
			volumes[c] = true
		}
		for _, v := range pod.Volumes {
			volumes[v.Name] = true
			if v.ConfigMap != nil && m.configMaps[v.ConfigMap.Name] == nil && !operatorConfigMaps[v.ConfigMap.Name] {
				t.Errorf("%s %s: volume %s uses ConfigMap %s, defined nowhere here", w.kind, w.name, v.Name, v.ConfigMap.Name)
			}
		}
		for _, c := range append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...) {
			ports := map[string]bool{}
			for _, p := range c.Ports {
				ports[p.Name] = true
			}
			for _, probe := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
				if probe != nil && probe.HTTPGet != nil && probe.HTTPGet.Port.StrVal != "" && !ports[probe.HTTPGet.Port.StrVal] {
					t.Errorf("%s %s container %s: probe port %q is not a declared port", w.kind, w.name, c.Name, probe.HTTPGet.Port.StrVal)
				}
			}
			for _, vm := range c.VolumeMounts {
				if !volumes[vm.Name] {
					t.Errorf("%s %s container %s: mount %s has no volume", w.kind, w.name, c.Name, vm.Name)
				}
			}
			sc := c.SecurityContext
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s %s container %s: allowPrivilegeEscalation is not false", w.kind, w.name, c.Name)
			}
		}
	}
	for _, s := range m.services {
		var matched []workload
		for _, w := range ws {
			if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(w.template.Labels)) {
				matched = append(matched, w)
			}
		}
		if len(matched) == 0 {
			t.Errorf("Service %s selects no workload (selector %v)", s.Name, s.Spec.Selector)
			continue
		}
		for _, sp := range s.Spec.Ports {
			name := sp.TargetPort.StrVal
			if name == "" {
				continue
			}
			found := false
			for _, w := range matched {
				for _, c := range w.template.Spec.Containers {
					for _, p := range c.Ports {
						found = found || p.Name == name
					}
				}
			}
			if !found {
				t.Errorf("Service %s port %s targets %q, which no selected container declares", s.Name, sp.Name, name)
			}
		}
	}
	for _, np := range m.netpols {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			t.Errorf("NetworkPolicy %s: %v", np.Name, err)
			continue
		}
		hit := false
		for _, w := range ws {
			hit = hit || sel.Matches(labels.Set(w.template.Labels))
		}
		if !hit {
			t.Errorf("NetworkPolicy %s selects no workload", np.Name)
		}
	}
}

// TestStrictDecodeRefusesTypos proves the strict decoder is in force: a misspelt field in an
// otherwise valid Deployment is an error, not silently dropped.
func TestStrictDecodeRefusesTypos(t *testing.T) {
	doc := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 2\n  selectr: {matchLabels: {app: x}}\n")
	if err := yaml.UnmarshalStrict(doc, &appsv1.Deployment{}); err == nil {
		t.Fatal("a misspelt field (selectr) was accepted")
	}
}
