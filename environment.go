package main

import (
	"encoding/json"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// settings is config.Settings: the name the module's functions use, where a parameter
// called config hides the package.
type settings = config.Settings

// Describe the environment with arguments, instead of pushdeploy.yaml or over its values.
//
// Without pushdeploy.yaml they are the whole environment (of the name deploy, status,
// plan... are given); with it, those given override the file's values for that
// environment, as Kamal's command line does.
func (m *Pushdeploy) WithEnvironment(
	// The application's name (lower-case letters, digits and dashes): it names the releases,
	// containers, locks and records.
	// +optional
	app string,
	// The target kind: ssh (files to servers), docker (a container on Docker hosts) or
	// kubernetes (Deployments).
	// +optional
	kind string,
	// The hosts, each host[:port] or user@host[:port] (ssh and docker).
	// +optional
	hosts []string,
	// The SSH login, unless a host names its own (ssh and docker).
	// +optional
	user string,
	// The SSH port, unless a host names its own (ssh and docker). Default: 22.
	// +optional
	port int,
	// A bastion host the SSH connections go through: host[:port] or user@host[:port] (ssh and
	// docker).
	// +optional
	jump string,
	// The application's directory on the hosts, e.g. /var/www/myapp (ssh; required).
	// +optional
	path string,
	// The command that makes the server pick up a new release, e.g. "sudo systemctl restart
	// myapp" (ssh).
	// +optional
	restart string,
	// Paths, relative to a release, kept in PATH/shared and linked into every release (ssh).
	// +optional
	shared []string,
	// How long the restart command may run before it is killed and the host fails, e.g. 30s
	// (ssh). Default: 2m.
	// +optional
	restartTimeout string,
	// The container's name (docker). Default: APP-ENV.
	// +optional
	container string,
	// Container ports to publish, as docker run -p does, e.g. 8080:80 (docker).
	// +optional
	publish []string,
	// The network the container joins, e.g. host (docker). Default: Docker's bridge.
	// +optional
	network string,
	// A plain environment variable of the container, KEY=VALUE (docker; repeatable). Secrets
	// go in --secret-env.
	// +optional
	envVar []string,
	// An environment variable of the container from a secret, KEY=SECRET where SECRET is NAME,
	// env:NAME or file:PATH (docker; repeatable).
	// +optional
	secretEnv []string,
	// A volume or host path to mount, as docker run -v does, e.g. data:/var/lib/app (docker;
	// repeatable).
	// +optional
	volume []string,
	// The container's restart policy: no, unless-stopped or on-failure (docker). Default:
	// unless-stopped.
	// +optional
	restartPolicy string,
	// The container's memory limit, e.g. 512m (docker). Default: no limit.
	// +optional
	memory string,
	// The container's CPU limit, e.g. 1.5 (docker). Default: no limit.
	// +optional
	cpus float64,
	// How long the old container gets to stop before it is killed, e.g. 30s (docker). Default:
	// 10s.
	// +optional
	stopTimeout string,
	// The directory on the hosts that keeps the deploy lock and history, absolute or relative
	// to the SSH user's home (docker). Default: .pushdeploy.
	// +optional
	stateDir string,
	// The Docker Engine's unix socket on the hosts (docker). Default: /var/run/docker.sock.
	// +optional
	dockerSocket string,
	// none: the image goes straight to each host over SSH, only the layers it lacks,
	// instead of the hosts pulling it from a registry (docker). Default: pull from the
	// image's registry.
	// +optional
	dockerRegistry string,
	// The kubeconfig context (kubernetes). Default: the current context.
	// +optional
	kubeContext string,
	// The namespace of the Deployments (kubernetes). Default: the context's, else default.
	// +optional
	namespace string,
	// A Deployment that runs the image: NAME, or NAME=CONTAINER,CONTAINER to set only those
	// containers (kubernetes; repeatable; required).
	// +optional
	deployment []string,
	// How long each rollout may take, e.g. 10m (kubernetes). Default: 5m.
	// +optional
	rolloutTimeout string,
	// The repository images are published to, e.g. acme/myapp (docker and kubernetes).
	// +optional
	imageRepository string,
	// The registry of --image-repository, e.g. ghcr.io. Default: Docker Hub.
	// +optional
	imageRegistry string,
	// The registry login. Default: no login.
	// +optional
	imageUsername string,
	// The secret holding the registry password: NAME, env:NAME or file:PATH. Default: the
	// registry password given to the deploy.
	// +optional
	imagePassword string,
	// Also tag published images latest.
	// +optional
	imageLatest bool,
	// A URL each host must answer, a template: http://{{.Address}}:8080/health.
	// +optional
	healthUrl string,
	// A command run on each host that exits 0 when the host is healthy (ssh and docker).
	// +optional
	healthCommand string,
	// The status --health-url must answer with. Default: 200.
	// +optional
	healthStatus int,
	// A regular expression the body of --health-url's answer must match.
	// +optional
	healthBody string,
	// The wait between health attempts, e.g. 2s. Default: 1s.
	// +optional
	healthInterval string,
	// How long one health attempt may take. Default: 5s.
	// +optional
	healthTimeout string,
	// How many health attempts fail before a host counts as unhealthy. Default: 30.
	// +optional
	healthRetries int,
	// How long a host must keep passing its check (a container keep running) after it first
	// passes, e.g. 10s. Default: 5s.
	// +optional
	healthStable string,
	// Hosts deployed at a time: a count (2) or a percentage (25%). Default: every host at
	// once.
	// +optional
	batch string,
	// Releases each host keeps for rollback, the live one included. Default: 5.
	// +optional
	keep int,
	// How long to wait for a deploy lock someone else holds, e.g. 5m. Default: 0s, fail at
	// once.
	// +optional
	lockWait string,
	// How long the deploy lock lives unless renewed. Default: 10m.
	// +optional
	lockTtl string,
	// Deploy only with an approval (--approved-by), which the record keeps.
	// +optional
	protected bool,
	// The environment whose live, healthy digest this one promotes instead of building (with
	// an environments file only).
	// +optional
	from string,
	// A command run before anything changes; a failure stops the deploy (repeatable).
	// +optional
	preDeploy []string,
	// A command run once every host is healthy; a failure rolls the deploy back (repeatable).
	// +optional
	postDeploy []string,
	// A command run after a rollback (repeatable).
	// +optional
	postRollback []string,
	// Where the hook commands run: container or hosts (ssh and docker). Default: container.
	// +optional
	hooksWhere string,
	// The secret holding a Slack incoming-webhook URL: NAME, env:NAME or file:PATH.
	// +optional
	slackWebhook string,
	// A URL the deployment record is posted to as JSON when a deploy ends.
	// +optional
	webhookUrl string,
	// An observability endpoint a deployment marker is posted to after every deploy.
	// +optional
	markerUrl string,
	// The secret holding --marker-url's bearer token: NAME, env:NAME or file:PATH.
	// +optional
	markerToken string,
) (*Pushdeploy, error) {
	b, err := json.Marshal(settings{
		App:             app,
		Kind:            kind,
		Hosts:           hosts,
		User:            user,
		Port:            port,
		Jump:            jump,
		Path:            path,
		Restart:         restart,
		Shared:          shared,
		RestartTimeout:  restartTimeout,
		Container:       container,
		Publish:         publish,
		Network:         network,
		EnvVars:         envVar,
		SecretEnv:       secretEnv,
		Volumes:         volume,
		RestartPolicy:   restartPolicy,
		Memory:          memory,
		CPUs:            cpus,
		StopTimeout:     stopTimeout,
		StateDir:        stateDir,
		DockerSocket:    dockerSocket,
		DockerRegistry:  dockerRegistry,
		KubeContext:     kubeContext,
		Namespace:       namespace,
		Deployments:     deployment,
		RolloutTimeout:  rolloutTimeout,
		ImageRepository: imageRepository,
		ImageRegistry:   imageRegistry,
		ImageUsername:   imageUsername,
		ImagePassword:   imagePassword,
		ImageLatest:     imageLatest,
		HealthURL:       healthUrl,
		HealthCommand:   healthCommand,
		HealthStatus:    healthStatus,
		HealthBody:      healthBody,
		HealthInterval:  healthInterval,
		HealthTimeout:   healthTimeout,
		HealthRetries:   healthRetries,
		HealthStable:    healthStable,
		Batch:           batch,
		Keep:            keep,
		LockWait:        lockWait,
		LockTTL:         lockTtl,
		Protected:       protected,
		From:            from,
		PreDeploy:       preDeploy,
		PostDeploy:      postDeploy,
		PostRollback:    postRollback,
		HooksWhere:      hooksWhere,
		SlackWebhook:    slackWebhook,
		WebhookURL:      webhookUrl,
		MarkerURL:       markerUrl,
		MarkerToken:     markerToken,
	})
	if err != nil {
		return nil, err
	}
	mm := *m
	mm.Settings = string(b)
	return &mm, nil
}
