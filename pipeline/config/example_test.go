package config_test

import (
	"fmt"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

func ExampleParse() {
	_, err := config.Parse("pushdeploy.yaml", []byte(`app: hello
environments:
  staging:
    ssh: {hosts: [10.0.0.1], user: deploy, path: /srv/hello}
    health:
      http: {url: "http://{{.Address}}:8080/health"}
      intervall: 2s
    batches: 150%
  production:
    from: stagin
    ssh: {hosts: [10.0.0.2], user: deploy, path: /srv/hello}
`))
	fmt.Println(err)
	// Output:
	// pushdeploy.yaml:7: environments.staging.health.intervall: unknown key "intervall", did you mean "interval"?
	// pushdeploy.yaml:8: environments.staging.batches: invalid batch percentage "150%": must be from 1% to 100%
	// pushdeploy.yaml:10: environments.production.from: environment "stagin" is not in the file (known: "staging", "production")
}

func ExampleFile_Env() {
	f, err := config.Load("../../examples/pushdeploy.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	env, err := f.Env("production")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(env.Kind(), env.Protected, env.From, env.Batches.Percent)
	for _, h := range env.Hosts() {
		fmt.Println(h)
	}
	// Output:
	// ssh true staging 25
	// deploy@10.0.2.10:22
	// deploy@10.0.2.11:22
	// deploy@10.0.2.12:22
	// deploy@10.0.2.13:22
}
