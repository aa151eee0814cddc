// pushdeploy's Jenkins shared library (Global Pipeline Libraries load vars/ of this
// repository): the steps an application's Jenkinsfile calls, each wrapping the same module
// calls a laptop makes (dagger -m github.com/pushdeploy/pushdeploy@REF call ...). An
// application's whole Jenkinsfile is examples/ci/Jenkinsfile:
//
//   library 'pushdeploy@v1'
//   pushdeploy.test()                                   // tests, JUnit reports to junit
//   pushdeploy.deploy(env: 'staging', ...)              // deploy, health, record
//   pushdeploy.deploy(env: 'production', approvedBy: pushdeploy.approve(submitter: 'releasers'))
//
// Each step takes an agent labelled `agent` (default "dagger": the dagger CLI and a container
// engine) for its own work only; approve asks for the approval on no agent at all.
//
// Credentials are Jenkins credential ids; they reach the module only as env:NAME or
// file:PATH. Every sh script is a single-quoted Groovy string: the shell, not Groovy,
// expands $VARS, so no secret is ever interpolated into a Groovy string.

// The module, at the library's version: PUSHDEPLOY_VERSION, default v1 (what
// library 'pushdeploy@v1' loads; set it beside a library pinned to another tag).
def module() {
    return "github.com/pushdeploy/pushdeploy@${libraryVersion()}"
}

def libraryVersion() {
    def v = env.PUSHDEPLOY_VERSION
    if (!v) {
        v = 'v1'
    }
    return v
}

// test runs the module's tests and hands their JUnit reports to junit, which marks the build
// unstable on a failed test (with skipStagesAfterUnstable, nothing is deployed then).
//   agent: the agent label (default 'dagger')
def test(Map args = [:]) {
    node(args.agent ?: 'dagger') {
        checkout scm
        withEnv(["PUSHDEPLOY=${module()}"]) {
            sh '''
                dagger -m "$PUSHDEPLOY" call \
                    --source . --revision "$GIT_COMMIT" \
                    test --allow-failure export --path reports
            '''
        }
        junit allowEmptyResults: true, testResults: 'reports/**/*.xml'
    }
}

// approve asks for the approval of a protected environment's deploy, on no agent, and returns
// who approved it: the input's submitter, which deploy passes as --approved-by. Jenkins
// administrators may approve whatever submitter says.
//   submitter:  who may approve (users or groups, comma-separated); required
//   message:    the question (default: promote to production?)
//   days:       how long the approval waits (default 3)
def approve(Map args) {
    if (!args.submitter) {
        error 'pushdeploy.approve: submitter (who may approve) is required'
    }
    def approver = ''
    timeout(time: args.days ?: 3, unit: 'DAYS') {
        approver = input(message: args.message ?: 'Promote what is live in staging to production?',
            ok: 'Deploy', submitter: args.submitter, submitterParameter: 'APPROVER')
    }
    if (!approver) {
        error 'pushdeploy.approve: the input returned no submitter'
    }
    echo "approved by ${approver}"
    return approver
}

// deploy deploys one environment with the module, under a lock of the environment (Lockable
// Resources) on top of pushdeploy's own deploy lock on the target.
//   env:         the environment, as pushdeploy.yaml names it; required
//   approvedBy:  who approved (approve's result): required by protected environments
//   sshKey:      an SSH username-with-private-key credential id
//   knownHosts:  a secret-file credential id: the hosts' known_hosts lines
//   secrets:     [NAME: 'credential-id'] secret-text credentials the file names; '{env}' in
//                an id is the environment ('shop-{env}-database-url')
//   config:      the environments file (default 'pushdeploy.yaml')
//   agent:       the agent label (default 'dagger')
def deploy(Map args) {
    if (!args.env) {
        error 'pushdeploy.deploy: env (the environment) is required'
    }
    def creds = []
    if (args.sshKey) {
        creds << sshUserPrivateKey(credentialsId: args.sshKey, keyFileVariable: 'SSH_KEY_FILE')
    }
    if (args.knownHosts) {
        creds << file(credentialsId: args.knownHosts, variable: 'KNOWN_HOSTS_FILE')
    }
    def names = []
    (args.secrets ?: [:]).each { name, id ->
        creds << string(credentialsId: id.replace('{env}', args.env), variable: name)
        names << "env:${name}"
    }
    def vars = ["PUSHDEPLOY=${module()}", "ENVIRONMENT=${args.env}", "CONFIG=${args.config ?: 'pushdeploy.yaml'}",
        "APPROVER=${args.approvedBy ?: ''}", "SECRETS_REF=${names.join(',')}"]
    node(args.agent ?: 'dagger') {
        checkout scm
        lock(resource: "${env.JOB_NAME}-${args.env}") {
            withCredentials(creds) {
                withEnv(vars) {
                    sh '''
                        set -- --source . --revision "$GIT_COMMIT" --branch "$BRANCH_NAME"
                        if [ -n "$SSH_KEY_FILE" ]; then set -- "$@" --ssh-key "file:$SSH_KEY_FILE"; fi
                        if [ -n "$KNOWN_HOSTS_FILE" ]; then set -- "$@" --known-hosts "$KNOWN_HOSTS_FILE"; fi
                        if [ -n "$SECRETS_REF" ]; then set -- "$@" --secrets "$SECRETS_REF"; fi
                        dagger -m "$PUSHDEPLOY" call "$@" \
                            deploy --config "$CONFIG" --env "$ENVIRONMENT" --approved-by "$APPROVER" \
                            --deployer "$JOB_NAME" --pipeline-id "$BUILD_URL"
                    '''
                }
            }
        }
    }
}
