// Package k8s starts a real Kubernetes control plane for tests: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok (one fake node that drives pod status),
// all on 127.0.0.1, with RBAC on and service-account tokens. No container runtime: kwok
// makes pods Ready, or keeps them in ImagePullBackOff / CrashLoopBackOff when their image
// reference contains "broken" / "crash" (kwok-stages.yaml; "flapping" crash-loops with a
// restart a second, as a kubelet reports it), so Deployments roll out, time
// out and roll back for real.
//
// It is a package of its own, not part of testbench, so that only the tests that need a
// cluster compile and link client-go.
//
// The binaries come from tools/build.sh (built from the Go module proxy, cached by version);
// the directory is $PUSHDEPLOY_K8S_BIN, by default $HOME/.cache/pushdeploy/k8s-v1.37.2/bin.
// When they are missing the tests that need a cluster are skipped through
// testbench.Unavailable (a failure when PUSHDEPLOY_REQUIRE_BENCH is set).
package k8s

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	_ "embed"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/pushdeploy/pushdeploy/internal/testbench"
)

// Version is the Kubernetes release the bench runs.
const Version = "v1.37.2"

// BinEnv names the directory holding etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, kwok and kubectl.
const BinEnv = "PUSHDEPLOY_K8S_BIN"

// NodeName is the fake node kwok manages.
const NodeName = "kwok-node-0"

//go:embed kwok-stages.yaml
var kwokStages []byte

// BinDir is where the control-plane binaries are: $PUSHDEPLOY_K8S_BIN, by default
// $HOME/.cache/pushdeploy/k8s-v1.37.2/bin.
func BinDir() string {
	if d := os.Getenv(BinEnv); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "pushdeploy", "k8s-"+Version, "bin")
}

// Cluster is a running control plane.
type Cluster struct {
	// Server is the API server's URL, "https://127.0.0.1:PORT".
	Server string
	// CA is the PEM certificate that signed the API server's.
	CA []byte
	// Kubeconfig is an admin kubeconfig (client certificate in system:masters).
	Kubeconfig []byte
	// Config is the admin REST config.
	Config *rest.Config
	// Client is an admin clientset.
	Client kubernetes.Interface
	// Bin is the directory of the binaries (kubectl included).
	Bin string
	// Started is how long the control plane took to be ready for rollouts.
	Started time.Duration

	dir   string
	procs []*proc
}

// Kubectl is the path of the kubectl binary built with the control plane.
func (c *Cluster) Kubectl() string { return filepath.Join(c.Bin, "kubectl") }

// Start starts a control plane and waits until a Deployment can roll out on it: API server
// ready, default service account minted, fake node Ready and untainted, scheduler healthy.
// logf (may be nil) hears progress.
func Start(ctx context.Context, logf func(format string, args ...any)) (c *Cluster, err error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	bin := BinDir()
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("kubernetes control plane: %s missing in %s (build with internal/testbench/k8s/tools/build.sh %s, or set %s)", b, bin, bin, BinEnv)
		}
	}
	start := time.Now()
	logf("k8s bench: starting control plane at %s", start.UTC().Format(time.RFC3339Nano))
	dir, err := os.MkdirTemp("", "pd-k8s-")
	if err != nil {
		return nil, fmt.Errorf("kubernetes bench directory: %w", err)
	}
	c = &Cluster{Bin: bin, dir: dir}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	etcdPort, peerPort, apiPort, kcmPort, schedPort, kubeletPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	p, err := writePKI(filepath.Join(dir, "pki"))
	if err != nil {
		return nil, err
	}
	c.CA = p.caPEM
	c.Server = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	c.Kubeconfig, err = kubeconfig(c.Server, p.caPEM, func(u *clientcmdapi.AuthInfo) {
		u.ClientCertificateData, u.ClientKeyData = p.adminCert, p.adminKey
	}, "default")
	if err != nil {
		return nil, err
	}
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, c.Kubeconfig, 0o600); err != nil {
		return nil, fmt.Errorf("writing admin kubeconfig: %w", err)
	}
	stages := filepath.Join(dir, "kwok-stages.yaml")
	if err := os.WriteFile(stages, kwokStages, 0o644); err != nil {
		return nil, fmt.Errorf("writing kwok stages: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	etcd, err := c.run("etcd", "--name=node0", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=node0="+peerURL,
		// Test data: durability is not worth the fsyncs.
		"--unsafe-no-fsync=true", "--quota-backend-bytes=1073741824", "--log-level=warn")
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, etcd, http.DefaultClient, etcdURL+"/health"); err != nil {
		return nil, err
	}
	logf("k8s bench: etcd healthy after %s", time.Since(start).Round(time.Millisecond))

	pki := p.dir
	api, err := c.run("kube-apiserver",
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(apiPort),
		"--tls-cert-file="+filepath.Join(pki, "apiserver.crt"), "--tls-private-key-file="+filepath.Join(pki, "apiserver.key"),
		"--client-ca-file="+filepath.Join(pki, "ca.crt"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(pki, "sa.key"),
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range=10.96.0.0/16",
		// On 127.0.0.1 the reconciler would fight over the kubernetes Service's endpoints.
		"--endpoint-reconciler-type=none",
		// Logs and exec go to kwok's kubelet server at the node's InternalIP (127.0.0.1),
		// not at its host name, which nothing resolves.
		"--kubelet-preferred-address-types=InternalIP",
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
		"--profiling=false")
	if err != nil {
		return nil, err
	}
	c.Config, err = clientcmd.RESTConfigFromKubeConfig(c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig: %w", err)
	}
	c.Config.QPS, c.Config.Burst = 200, 400
	c.Client, err = kubernetes.NewForConfig(c.Config)
	if err != nil {
		return nil, fmt.Errorf("admin client: %w", err)
	}
	adminHTTP, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		return nil, fmt.Errorf("admin http client: %w", err)
	}
	if err := waitHTTP(ctx, api, adminHTTP, c.Server+"/readyz"); err != nil {
		return nil, err
	}
	logf("k8s bench: kube-apiserver ready after %s", time.Since(start).Round(time.Millisecond))

	// The fake node first, so that kwok finds it when it starts.
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        NodeName,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
			Labels: map[string]string{"kubernetes.io/hostname": NodeName, "kubernetes.io/os": "linux",
				"kubernetes.io/arch": "amd64", "type": "kwok"},
		},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{"cpu": resource.MustParse("32"), "memory": resource.MustParse("256Gi"), "pods": resource.MustParse("500")},
			Capacity:    corev1.ResourceList{"cpu": resource.MustParse("32"), "memory": resource.MustParse("256Gi"), "pods": resource.MustParse("500")},
		},
	}
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating the fake node: %w", err)
	}
	kcm, err := c.run("kube-controller-manager",
		"--kubeconfig="+kc, "--authentication-kubeconfig="+kc, "--authorization-kubeconfig="+kc,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(kcmPort), "--leader-elect=false",
		"--service-account-private-key-file="+filepath.Join(pki, "sa.key"),
		"--root-ca-file="+filepath.Join(pki, "ca.crt"),
		"--use-service-account-credentials=false",
		"--kube-api-qps=200", "--kube-api-burst=400")
	if err != nil {
		return nil, err
	}
	sched, err := c.run("kube-scheduler",
		"--kubeconfig="+kc, "--authentication-kubeconfig="+kc, "--authorization-kubeconfig="+kc,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(schedPort), "--leader-elect=false")
	if err != nil {
		return nil, err
	}
	// kwok's kubelet server reads the ClusterLogs and ClusterExec objects of tests
	// (PodLogs, PodExec): their CRDs first.
	if err := c.installKwokCRDs(ctx); err != nil {
		return nil, err
	}
	kwok, err := c.run("kwok", "--kubeconfig="+kc, "--config="+stages,
		"--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--node-lease-duration-seconds=40", "--cidr=10.244.0.1/16", "--node-ip=127.0.0.1",
		"--server-address=127.0.0.1:"+strconv.Itoa(kubeletPort), "--node-port="+strconv.Itoa(kubeletPort),
		"--enable-crds=ClusterLogs,ClusterExec")
	if err != nil {
		return nil, err
	}
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // the components' self-signed health endpoints
	if err := waitHTTP(ctx, kcm, insecure, "https://127.0.0.1:"+strconv.Itoa(kcmPort)+"/healthz"); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, sched, insecure, "https://127.0.0.1:"+strconv.Itoa(schedPort)+"/healthz"); err != nil {
		return nil, err
	}
	// Pods are admitted once their namespace's default service account exists (controller
	// manager), and scheduled once the node is Ready (kwok) and untainted (node lifecycle).
	if err := poll(ctx, kcm, "the default service account", func() (bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, ignoreNotFound(err)
	}); err != nil {
		return nil, err
	}
	if err := poll(ctx, kwok, "node "+NodeName+" Ready without taints", func() (bool, error) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue && len(n.Spec.Taints) == 0, nil
			}
		}
		return false, nil
	}); err != nil {
		return nil, err
	}
	c.Started = time.Since(start)
	logf("k8s bench: control plane at %s ready for rollouts after %s", c.Server, c.Started.Round(time.Millisecond))
	return c, nil
}

// Stop kills every component and removes the state. SIGKILL, not SIGTERM: the state is
// thrown away, and the API server's graceful shutdown (draining watches) takes seconds.
func (c *Cluster) Stop() error {
	var errs []error
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].cmd.Process.Kill()
	}
	for i := len(c.procs) - 1; i >= 0; i-- {
		<-c.procs[i].done
	}
	c.procs = nil
	if c.dir != "" {
		if err := os.RemoveAll(c.dir); err != nil {
			errs = append(errs, fmt.Errorf("removing the kubernetes bench directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Log returns the last lines a component (e.g. "kube-apiserver") printed.
func (c *Cluster) Log(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "logs", name+".log"))
	return tail(string(b), 30)
}

// Namespace creates a namespace for the calling test, waits until pods can be created in
// it (its default service account exists), and deletes it when the test ends.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	ctx := t.Context()
	base := strings.ToLower(t.Name())
	base = strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			return r
		}
		return '-'
	}, base)
	if len(base) > 40 {
		base = base[:40]
	}
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: strings.Trim(base, "-") + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a namespace: %v", err)
	}
	t.Cleanup(func() {
		// Background deletion: the next test does not wait for the garbage collector.
		c.Client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	if err := poll(ctx, nil, "service account default in "+ns.Name, func() (bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, ignoreNotFound(err)
	}); err != nil {
		t.Fatalf("namespace %s: %v", ns.Name, err)
	}
	return ns.Name
}

// TokenKubeconfig mints a token for service account sa in namespace ns (TokenRequest API,
// valid one hour) and returns a kubeconfig that uses it, with ns as its namespace.
func (c *Cluster) TokenKubeconfig(ctx context.Context, ns, sa string) ([]byte, error) {
	exp := int64(3600)
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("requesting a token for service account %s/%s: %w", ns, sa, err)
	}
	return kubeconfig(c.Server, c.CA, func(u *clientcmdapi.AuthInfo) { u.Token = tr.Status.Token }, ns)
}

// kubeconfig writes a one-context kubeconfig for server.
func kubeconfig(server string, ca []byte, auth func(*clientcmdapi.AuthInfo), ns string) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["bench"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	u := clientcmdapi.NewAuthInfo()
	auth(u)
	cfg.AuthInfos["bench"] = u
	cfg.Contexts["bench"] = &clientcmdapi.Context{Cluster: "bench", AuthInfo: "bench", Namespace: ns}
	cfg.CurrentContext = "bench"
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("writing a kubeconfig: %w", err)
	}
	return b, nil
}

var shared struct {
	sync.Mutex
	c   *Cluster
	err error
}

// Shared returns the test binary's one control plane, starting it on first use (a few
// seconds). Tests keep apart with a namespace each (Cluster.Namespace). The package's
// TestMain stops it (see Main); should the binary die first, the components get SIGKILL
// from the kernel when their parent goes.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if shared.c == nil && shared.err == nil {
		shared.c, shared.err = Start(context.Background(), t.Logf)
	}
	if shared.err != nil {
		testbench.Unavailable(t, "%v", shared.err)
	}
	return shared.c
}

// StopShared stops the shared control plane if one was started.
func StopShared() error {
	shared.Lock()
	defer shared.Unlock()
	if shared.c == nil {
		return nil
	}
	err := shared.c.Stop()
	shared.c = nil
	return err
}

// Main runs the package's tests, then stops the shared control plane:
//
//	func TestMain(m *testing.M) { os.Exit(k8s.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if err := StopShared(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping the shared kubernetes control plane: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// proc is one running component.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	c    *Cluster
}

func (c *Cluster) run(name string, args ...string) (*proc, error) {
	if err := os.MkdirAll(filepath.Join(c.dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(c.dir, "logs", name+".log"))
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd := exec.Command(filepath.Join(c.Bin, name), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The components go with the test binary even if TestMain never stops them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), c: c}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	c.procs = append(c.procs, p)
	return p, nil
}

// poll calls cond every 50 ms until it is true, p exits, cond fails, or ctx ends.
func poll(ctx context.Context, p *proc, what string, cond func() (bool, error)) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var exited <-chan struct{}
	if p != nil {
		exited = p.done
	}
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited (%v) while waiting for %s; log tail:\n%s", p.name, p.cmd.ProcessState, what, p.c.Log(p.name))
		case <-ctx.Done():
			msg := fmt.Sprintf("waiting for %s: %v", what, ctx.Err())
			if p != nil {
				msg += "; " + p.name + " log tail:\n" + p.c.Log(p.name)
			}
			return errors.New(msg)
		case <-tick.C:
		}
	}
}

// waitHTTP polls url until it answers 200.
func waitHTTP(ctx context.Context, p *proc, client *http.Client, url string) error {
	return poll(ctx, p, p.name+" at "+url, func() (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, nil
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// freePorts reserves n distinct loopback ports by listening, then frees them for the
// components. Another process could take one in between; on a test machine that is rare.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

type pkiFiles struct {
	dir                 string
	caPEM               []byte
	adminCert, adminKey []byte
}

// writePKI makes the cluster's CA, the API server's serving certificate, an admin client
// certificate (system:masters) and the service-account signing key pair, all ECDSA P-256.
func writePKI(dir string) (*pkiFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki directory: %w", err)
	}
	now := time.Now().Add(-time.Hour)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pushdeploy-test-ca"},
		NotBefore: now, NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("creating the test CA: %w", err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, subject pkix.Name, usage x509.ExtKeyUsage, ips []net.IP, dns []string) (certPEM, keyPEM []byte, err error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: subject,
			NotBefore: now, NotAfter: now.Add(10 * 365 * 24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: ips, DNSNames: dns,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, fmt.Errorf("signing %s: %w", subject.CommonName, err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
	}
	p := &pkiFiles{dir: dir, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	apiCert, apiKey, err := leaf(2, pkix.Name{CommonName: "kube-apiserver"}, x509.ExtKeyUsageServerAuth,
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"})
	if err != nil {
		return nil, err
	}
	p.adminCert, p.adminKey, err = leaf(3, pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}}, x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return nil, err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	for name, b := range map[string][]byte{
		"ca.crt":        p.caPEM,
		"apiserver.crt": apiCert, "apiserver.key": apiKey,
		"sa.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER}),
		"sa.pub": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return p, nil
}

func tail(s string, n int) string {
	lines := bytes.Split(bytes.TrimRight([]byte(s), "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
