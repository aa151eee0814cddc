package config

// The types below are the environments file. Their doc comments become the descriptions in
// schema/pushdeploy.schema.json (go generate ./pipeline/config), so they are written for the
// person editing pushdeploy.yaml. Field names are the yaml tags; `jsonschema:"required"` marks
// a key that must be present, and the parser enforces the same tags (enum=, minimum=) as the
// schema does.

// File is a pushdeploy.yaml: one application, how it is built and published, and the
// environments it is deployed to.
type File struct {
	// App names the application: lower-case letters, digits and dashes. It names the release
	// directories, containers, locks and records on every target.
	App string `yaml:"app" jsonschema:"required,pattern=^[a-z0-9][a-z0-9-]*$"`
	// Build says how the application is built and tested. Default: detected from the source.
	Build Build `yaml:"build,omitempty"`
	// Image says where the built image is published. Needed by docker and kubernetes
	// environments; ssh environments deploy the build's artifacts instead.
	Image *Image `yaml:"image,omitempty"`
	// Environments maps each environment's name (lower-case letters, digits and dashes) to
	// where and how it is deployed.
	Environments map[string]*Environment `yaml:"environments" jsonschema:"required"`

	name  string             // file name for messages
	order []string           // environment names in file order
	lines map[string]linePos // key path -> position, from parsing
}

// Build says how the application is built and tested.
type Build struct {
	// Context is the source directory, relative to the file. Default: ".".
	Context string `yaml:"context,omitempty"`
	// Kind is how to build: "go" (go test, go build), "node" (npm ci, npm test, npm run
	// build) or "docker" (the Dockerfile). Default: detected (a Dockerfile, else go.mod, else
	// package.json).
	Kind string `yaml:"kind,omitempty" jsonschema:"enum=go,enum=node,enum=docker"`
	// Dockerfile is the Dockerfile for kind docker, relative to the context. Default:
	// "Dockerfile".
	Dockerfile string `yaml:"dockerfile,omitempty"`
	// Toolchain overrides the image the build and tests run in, e.g. "golang:1.26" or
	// "node:22". Default: the kind's pinned toolchain.
	Toolchain string `yaml:"toolchain,omitempty"`
	// Base overrides the base image the go and node kinds put the build output on. Default:
	// the kind's pinned base image.
	Base string `yaml:"base,omitempty"`
	// Artifacts is the directory, relative to the context, whose files an ssh environment
	// deploys, e.g. "dist/". Default: the build's output directory.
	Artifacts string `yaml:"artifacts,omitempty"`
}

// Image says where the built image is published.
type Image struct {
	// Registry is the registry host, e.g. "ghcr.io" or "127.0.0.1:5000". Default: Docker
	// Hub.
	Registry string `yaml:"registry,omitempty"`
	// Repository is the repository in the registry, e.g. "acme/myapp".
	Repository string `yaml:"repository" jsonschema:"required"`
	// Username logs in to the registry; the password is a secret. Default: no login.
	Username string `yaml:"username,omitempty"`
	// Password names the secret holding the registry password or token (NAME, env:NAME or
	// file:PATH). Required with username.
	Password SecretRef `yaml:"password,omitempty"`
	// Tags says which tags are pushed besides the digest every deploy uses.
	Tags TagPolicy `yaml:"tags,omitempty"`
}

// TagPolicy says which tags an image gets when it is published. Deploys always use the
// digest; tags are for people.
type TagPolicy struct {
	// Commit tags the image with the commit SHA. Default: true.
	Commit *bool `yaml:"commit,omitempty"`
	// Branch tags the image with the branch name (slashes become dashes). Default: false.
	Branch bool `yaml:"branch,omitempty"`
	// Version tags the image with the git tag of the commit, when it has one. Default: true.
	Version *bool `yaml:"version,omitempty"`
	// Latest also tags the image "latest". Default: false.
	Latest bool `yaml:"latest,omitempty"`
	// Extra lists further fixed tags. Default: none.
	Extra []string `yaml:"extra,omitempty"`
}

// Environment is one place the application is deployed to: exactly one of ssh, docker and
// kubernetes says which kind of target and where, the rest says how.
type Environment struct {
	// SSH deploys the build's files to servers over SSH, as atomic release directories.
	SSH *SSHTarget `yaml:"ssh,omitempty"`
	// Docker runs the image as a container on Docker hosts reached over SSH.
	Docker *DockerTarget `yaml:"docker,omitempty"`
	// Kubernetes sets the image of Deployments in a cluster and waits for their rollout.
	Kubernetes *KubernetesTarget `yaml:"kubernetes,omitempty"`

	// URL is where the environment is served, shown in notifications. Default: none.
	URL string `yaml:"url,omitempty"`
	// Protected environments deploy only with an approval (--approved-by), which the
	// deployment record keeps. Default: false.
	Protected bool `yaml:"protected,omitempty"`
	// From names the environment this one promotes from: it deploys only the exact digest
	// that is live and healthy there, and never rebuilds. Default: none (build and deploy).
	From string `yaml:"from,omitempty"`
	// Health says how to tell that a host serves the new release. Default: only the
	// target's own check (a container's HEALTHCHECK, a rollout's status).
	Health *Health `yaml:"health,omitempty"`
	// Batches deploys to that many hosts at a time: a count (2) or a percentage ("25%"),
	// the hosts of a batch in parallel. Default: every host in one batch.
	Batches Batches `yaml:"batches,omitempty"`
	// Keep is how many releases each host keeps for rollback (release directories, images,
	// ReplicaSets), the live one included. Default: 5; at least 2.
	Keep int `yaml:"keep,omitempty" jsonschema:"minimum=2"`
	// Lock says how the deploy lock is waited for and how long it lives.
	Lock Lock `yaml:"lock,omitempty"`
	// Bake keeps probing every switched host's health for this long after each batch (and
	// after the last) before the deploy goes on; a failure during it rolls back as a failed
	// health check does. The record says how long the deploy baked. Default: "0s" (off).
	Bake Duration `yaml:"bake,omitempty"`
	// Steps is a canary: the hosts go live in the steps' order, each step one of hosts (how
	// many hosts are live after it), percent (what share of them), bake (probe for that
	// long) and analysis (the name of an analysis template that must pass). Hosts left
	// after the last step go live at the end. A failed step rolls back only the hosts that
	// switched; the others are never touched. Exclusive with batches. Default: none.
	Steps []Step `yaml:"steps,omitempty"`
	// Analysis names the templates that steps run: a Prometheus query and the condition its
	// value must meet. Default: none.
	Analysis map[string]*Analysis `yaml:"analysis,omitempty"`
	// Hooks are commands run before and after the deploy and after a rollback.
	Hooks Hooks `yaml:"hooks,omitempty"`
	// Notifications are sent when a deploy succeeds or fails.
	Notifications Notifications `yaml:"notifications,omitempty"`
	// Markers are deployment records posted to observability endpoints after every deploy.
	Markers []Marker `yaml:"markers,omitempty"`
}

// SSHAccess is how pushdeploy reaches hosts over SSH.
type SSHAccess struct {
	// User is the SSH login, unless a host names its own. Required when a host does not.
	User string `yaml:"user,omitempty"`
	// Port is the SSH port, unless a host names its own. Default: 22.
	Port int `yaml:"port,omitempty" jsonschema:"minimum=1,maximum=65535"`
	// Key names the secret holding the SSH private key (NAME, env:NAME or file:PATH).
	// Default: the key given to the deploy (--ssh-key).
	Key SecretRef `yaml:"key,omitempty"`
	// KnownHosts names the known_hosts lines that host keys are verified against (NAME,
	// env:NAME or file:PATH). Host keys are always verified. Default: the known_hosts given
	// to the deploy (--known-hosts).
	KnownHosts SecretRef `yaml:"known_hosts,omitempty"`
	// Jump is a bastion host the connections go through: "host[:port]" or an object.
	Jump *HostSpec `yaml:"jump,omitempty"`
}

// SSHTarget deploys files to servers: each release in its own directory under path, made
// live by switching the "current" symlink.
type SSHTarget struct {
	// Hosts are the servers, each "host[:port]" or an object with host, port and user.
	Hosts     []HostSpec `yaml:"hosts" jsonschema:"required,minItems=1"`
	SSHAccess `yaml:",inline"`
	// Path is the application's directory on the hosts, e.g. "/var/www/myapp"; releases go
	// in path/releases, the live one is path/current.
	Path string `yaml:"path" jsonschema:"required"`
	// Restart is the command that makes the server pick up the new release, e.g. "sudo
	// systemctl restart myapp"; it runs in path/current with every PUSHDEPLOY_* variable.
	// Default: none.
	Restart string `yaml:"restart,omitempty"`
	// RestartTimeout bounds the restart command: one that runs longer is killed (its whole
	// process group) and the host fails, so the deploy rolls back. Default: "2m" (longer
	// than systemd's own 90s start timeout).
	RestartTimeout Duration `yaml:"restart_timeout,omitempty"`
	// Shared lists paths, relative to the release, that live in path/shared and are linked
	// into every release (uploads, logs, .env). A path whose last element has a dot (.env,
	// config/database.yml) is a file, any other a directory; end a path with "/" to make it
	// a directory whatever its name. Default: none.
	Shared []string `yaml:"shared,omitempty"`
	// Checksum hashes every artifact file on every deploy, as rsync --checksum: none is
	// trusted because its size and modification time are those recorded with the live
	// release (rsync's default check, which misses a file changed in place with its size
	// kept and its time set back). Default: false.
	Checksum bool `yaml:"checksum,omitempty"`
	// Logs is the command `pushdeploy logs` runs on each host to print the application's
	// logs, e.g. "pm2 logs myapp --nostream --lines 200" or "journalctl -u myapp
	// --no-pager". It runs in path/current with every PUSHDEPLOY_* variable, and
	// PUSHDEPLOY_LOGS_SINCE (--since in seconds, empty when not given) and
	// PUSHDEPLOY_LOGS_FOLLOW ("1" with --follow, else empty) for the command to pass on.
	// Default: none (logs then says to add it).
	Logs string `yaml:"logs,omitempty"`
}

// DockerTarget runs the image as one container on each Docker host, reached over SSH.
type DockerTarget struct {
	// Hosts are the Docker hosts, each "host[:port]" (the SSH port) or an object with host,
	// port and user.
	Hosts     []HostSpec `yaml:"hosts" jsonschema:"required,minItems=1"`
	SSHAccess `yaml:",inline"`
	// Container names the container. Default: "<app>-<environment>".
	Container string `yaml:"container,omitempty"`
	// Ports publishes container ports, as docker run -p does: "8080:8080",
	// "127.0.0.1:8080:80". Default: none.
	Ports []string `yaml:"ports,omitempty"`
	// Network is the network the container joins, e.g. "host". Default: Docker's default
	// bridge.
	Network string `yaml:"network,omitempty"`
	// Env sets plain environment variables. Values are not secret: a variable whose name
	// says it is one (TOKEN, SECRET, PASSWORD, KEY) belongs in secret_env.
	Env map[string]string `yaml:"env,omitempty"`
	// SecretEnv sets environment variables from secrets: variable name to secret (NAME,
	// env:NAME or file:PATH).
	SecretEnv map[string]SecretRef `yaml:"secret_env,omitempty"`
	// Volumes mounts volumes or host paths, as docker run -v does: "data:/var/lib/app".
	Volumes []string `yaml:"volumes,omitempty"`
	// Restart is the container's restart policy. Default: "unless-stopped". ("always" is
	// refused: the engine would start the stopped containers kept for rollback beside the
	// live one when it restarts.)
	Restart string `yaml:"restart,omitempty" jsonschema:"enum=no,enum=unless-stopped,enum=on-failure"`
	// Memory limits the container's memory: "512m", "2g". Default: no limit.
	Memory string `yaml:"memory,omitempty" jsonschema:"pattern=^[0-9]+[bkmgBKMG]?$"`
	// CPUs limits the container's CPUs, e.g. 1.5. Default: no limit.
	CPUs float64 `yaml:"cpus,omitempty" jsonschema:"exclusiveMinimum=0"`
	// StopTimeout is how long the old container gets to stop before it is killed. Default:
	// "10s".
	StopTimeout Duration `yaml:"stop_timeout,omitempty"`
	// StateDir is the directory on each host that holds the deploy lock and the history
	// (<state_dir>/<app>-<environment>/): an absolute path, or one relative to the SSH
	// user's home. The user must be able to write there; it is checked before the lock.
	// Default: ".pushdeploy" in the SSH user's home, which a non-root user in the docker
	// group can write.
	StateDir string `yaml:"state_dir,omitempty"`
	// Socket is the path of the Docker Engine's unix socket on the hosts, forwarded over
	// SSH; checked before the lock. Default: "/var/run/docker.sock".
	Socket string `yaml:"socket,omitempty" jsonschema:"pattern=^/"`
	// Registry "none" sends the image straight to each host over SSH instead of the hosts
	// pulling it from image.repository: only the layers a host's engine lacks travel, and
	// the release is named by its image ID (the config's digest). The file then needs no
	// image settings for this environment. Default: the hosts pull from image.repository.
	Registry string `yaml:"registry,omitempty" jsonschema:"enum=none"`
	// BlueGreen deploys with no downtime behind a reverse proxy on the host: the new
	// container starts beside the old one on the other slot, and once it is healthy the
	// switch command points the proxy at it. Default: stop-then-start (a moment with no
	// container serving).
	BlueGreen *BlueGreen `yaml:"blue_green,omitempty"`
}

// BlueGreen is a zero-downtime setup: two slots (host ports on 127.0.0.1) that releases
// take in turn, and a reverse proxy on the host that the switch command points at the live
// one (nginx: the live slot as server, the other as backup, then nginx -s reload).
type BlueGreen struct {
	// Ports are the two slots, host ports on 127.0.0.1.
	Ports []int `yaml:"ports" jsonschema:"required,minItems=2,maxItems=2"`
	// ContainerPort is the port the application listens on in the container; each release
	// publishes it on its slot. Required unless the network is host.
	ContainerPort int `yaml:"container_port,omitempty" jsonschema:"minimum=1,maximum=65535"`
	// Env adds variables per slot, "NAME=value" where {{.Port}} is the release's slot and
	// {{.Other}} the other one, e.g. "PORT={{.Port}}" for a host-network application.
	Env []string `yaml:"env,omitempty"`
	// Switch is the shell command run on the host once the new release is healthy, with
	// {{.Port}} its slot and {{.Other}} the old one.
	Switch string `yaml:"switch" jsonschema:"required"`
	// Drain is how long the old container keeps running after the switch. Default: "0s".
	Drain Duration `yaml:"drain,omitempty"`
}

// KubernetesTarget sets the image of Deployments and waits for their rollout, as kubectl
// set image and rollout status do.
type KubernetesTarget struct {
	// Context is the kubeconfig context. Default: the kubeconfig's current context.
	Context string `yaml:"context,omitempty"`
	// Kubeconfig names the secret holding the kubeconfig (NAME, env:NAME or file:PATH).
	// Default: the kubeconfig given to the deploy (--kubeconfig).
	Kubeconfig SecretRef `yaml:"kubeconfig,omitempty"`
	// Namespace holds the Deployments. Default: the context's namespace, else "default".
	Namespace string `yaml:"namespace,omitempty"`
	// Deployments are the Deployments that run the image: a name, or an object with name
	// and containers.
	Deployments []Deployment `yaml:"deployments" jsonschema:"required,minItems=1"`
	// RolloutTimeout bounds the wait for each rollout. Default: "5m".
	RolloutTimeout Duration `yaml:"rollout_timeout,omitempty"`
	// CrashLoopRestarts fails a rollout before its deadline once a new pod's container is in
	// CrashLoopBackOff with this many restarts. Default: 3.
	CrashLoopRestarts int `yaml:"crash_loop_restarts,omitempty" jsonschema:"minimum=1"`
	// StartGrace is how long a new pod's container may wait in ImagePullBackOff,
	// ErrImagePull, InvalidImageName or CreateContainerConfigError, or the new ReplicaSet
	// report FailedCreate (quota, admission), before the rollout fails. Default: "60s".
	StartGrace Duration `yaml:"start_grace,omitempty"`
}

// Deployment is a Kubernetes Deployment whose containers run the image.
type Deployment struct {
	// Name is the Deployment's name.
	Name string `yaml:"name" jsonschema:"required"`
	// Containers are the containers whose image is set. Default: the Deployment's only
	// container, else the one named like the Deployment (sidecars keep their images).
	Containers []string `yaml:"containers,omitempty"`
}

// Health says how to tell that a host serves the new release: an HTTP check or a command,
// tried until it passes or the retries run out.
type Health struct {
	// HTTP checks a URL on each host.
	HTTP *HTTPCheck `yaml:"http,omitempty"`
	// Command runs on each host (ssh and docker environments); exit status 0 is healthy.
	Command string `yaml:"command,omitempty"`
	// Interval is the wait between attempts. Default: "1s".
	Interval Duration `yaml:"interval,omitempty"`
	// Timeout bounds one attempt: an HTTP request, or a command, which is killed on the host
	// when it runs longer. Default: "5s".
	Timeout Duration `yaml:"timeout,omitempty"`
	// Retries is how many attempts fail before the host counts as unhealthy. Default: 30.
	Retries int `yaml:"retries,omitempty" jsonschema:"minimum=1"`
	// Stable is the stability window, for every kind: after its first passing check a host
	// must keep passing (checked every interval) and a container must keep running, not
	// restarted, for this long before the host counts as healthy. A container with neither
	// a HEALTHCHECK nor a configured check must stay running for it. Default: "5s" (Docker
	// Swarm's update monitor).
	Stable Duration `yaml:"stable,omitempty"`
}

// HTTPCheck is an HTTP GET that must answer with the expected status (and body).
type HTTPCheck struct {
	// URL is a template evaluated for each host: {{.Address}} is the host's address,
	// {{.Host}} its name, {{.Release}} the release id, {{.Version}}, {{.Digest}},
	// {{.Image}}, {{.App}} and {{.Env}} the release's fields (naming one the release has
	// empty is an error). Example: "http://{{.Address}}:8080/health".
	URL string `yaml:"url" jsonschema:"required"`
	// Status is the status code expected. Default: 200.
	Status int `yaml:"status,omitempty" jsonschema:"minimum=100,maximum=599"`
	// Body is a regular expression the response body must match, first a template over the
	// fields url has, each value matched literally: "{{.Version}}" proves the new release
	// answers. Default: any body.
	Body string `yaml:"body,omitempty"`
}

// Lock says how the target's deploy lock is waited for and how long it lives.
type Lock struct {
	// Wait is how long a deploy waits for a lock that someone else holds. Default: "0s",
	// fail at once naming the holder.
	Wait Duration `yaml:"wait,omitempty"`
	// TTL is how long the lock lives unless renewed; a running deploy renews it, so only a
	// dead deploy's lock expires. Default: "10m"; at least "1s".
	TTL Duration `yaml:"ttl,omitempty"`
}

// Hooks are shell commands run around a deploy, with the deployment record's fields in
// their environment (PUSHDEPLOY_APP, PUSHDEPLOY_ENV, PUSHDEPLOY_VERSION, ...).
type Hooks struct {
	// PreDeploy runs before anything changes; a failing command stops the deploy.
	PreDeploy []string `yaml:"pre_deploy,omitempty"`
	// Updated runs on every host inside the staged release, after the upload and before
	// current moves (Capistrano's deploy:updated): "npm ci --omit=dev", asset compilation,
	// migrations. On servers each command runs in path/releases/<id> with the PUSHDEPLOY_*
	// variables and PUSHDEPLOY_PATH; commands replace files rather than rewrite them in
	// place: a new release starts as hard links of the live one. On Docker hosts each runs
	// with /bin/sh -c in a one-off container of the new image, with the release's
	// environment, volumes and network and the PUSHDEPLOY_* variables, beside the live
	// container (no published port). Each is bounded by timeout; a failing one discards the
	// release on every host and nothing goes live. ssh and docker environments (Kubernetes:
	// hooks.migrate).
	Updated []string `yaml:"updated,omitempty"`
	// PostDeploy runs after every host is healthy (integration checks); a failing command
	// fails the deploy and rolls it back, unless continue_on_failure is set.
	PostDeploy []string `yaml:"post_deploy,omitempty"`
	// PostRollback runs after a rollback; a failure is reported, the rollback stands.
	PostRollback []string `yaml:"post_rollback,omitempty"`
	// Where runs the commands: "container" (in a container of the pipeline) or "hosts" (on
	// every host, ssh and docker environments). Default: "container".
	Where string `yaml:"where,omitempty" jsonschema:"enum=container,enum=hosts"`
	// Image is the image of the container the commands run in. Default: the toolchain
	// image of the build.
	Image string `yaml:"image,omitempty"`
	// ContinueOnFailure makes a failing post-deploy command a warning in the record
	// instead of a failed, rolled-back deploy. Default: false.
	ContinueOnFailure bool `yaml:"continue_on_failure,omitempty"`
	// Timeout bounds each command. Default: "5m".
	Timeout Duration `yaml:"timeout,omitempty"`
	// Migrate runs once per deploy after pre_deploy and before any host switches (in a
	// container, or on the first host where: hosts); marked irreversible, the deploy's
	// record says it crossed a change a rollback cannot undo. Default: none.
	Migrate *Migrate `yaml:"migrate,omitempty"`
}

// Notifications are messages sent when a deploy ends. A failed notification never fails a
// deploy: it is a warning in the record.
type Notifications struct {
	// Slack posts to a Slack incoming webhook.
	Slack *SlackNotification `yaml:"slack,omitempty"`
	// Webhook posts the deployment record as JSON to a URL.
	Webhook *WebhookNotification `yaml:"webhook,omitempty"`
}

// SlackNotification posts to a Slack incoming webhook.
type SlackNotification struct {
	// Webhook names the secret holding the incoming-webhook URL (NAME, env:NAME or
	// file:PATH): the URL itself is a credential.
	Webhook SecretRef `yaml:"webhook" jsonschema:"required"`
	// On says which outcomes are sent: "success", "failure" (a rolled-back deploy is a
	// failure). Default: both.
	On []string `yaml:"on,omitempty" jsonschema:"enum=success,enum=failure"`
}

// WebhookNotification posts the deployment record as JSON to a URL.
type WebhookNotification struct {
	// URL receives the POST. It holds no credentials: use secret.
	URL string `yaml:"url" jsonschema:"required"`
	// Secret names the secret (NAME, env:NAME or file:PATH) whose value signs each body:
	// HMAC-SHA256 in the X-Pushdeploy-Signature-256 header. Default: unsigned.
	Secret SecretRef `yaml:"secret,omitempty"`
	// On says which outcomes are sent: "success", "failure" (a rolled-back deploy is a
	// failure). Default: both.
	On []string `yaml:"on,omitempty" jsonschema:"enum=success,enum=failure"`
}

// Marker posts a deployment marker (service, version, environment, timestamp, outcome,
// record id) to an observability endpoint after every deploy.
type Marker struct {
	// URL receives the POST.
	URL string `yaml:"url" jsonschema:"required"`
	// Token names the secret (NAME, env:NAME or file:PATH) sent as the bearer token.
	// Default: no Authorization header.
	Token SecretRef `yaml:"token,omitempty"`
	// Body is a Go text/template for the JSON body over the marker's fields: .Service,
	// .Version, .Environment, .Timestamp, .Outcome, .RecordID, .Digest, .Deployer, .URL;
	// {{json .X}} writes a JSON value. It must render valid JSON. Default: those fields as a
	// JSON object.
	Body string `yaml:"body,omitempty"`
}
