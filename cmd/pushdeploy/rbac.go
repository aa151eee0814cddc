package main

import (
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, rbacCmd) }

func rbacCmd() *cobra.Command {
	var c common
	var env, serviceAccount string
	var operator bool
	cmd := &cobra.Command{
		Use:   "rbac --env NAME [--service-account NAME] [--operator]",
		Short: "Print the least-privilege Role and RoleBinding a Kubernetes environment needs",
		Long: `rbac prints the Role and RoleBinding that exactly this Kubernetes environment needs, in its
namespace: get, list, watch and patch on its Deployments by name, its Lease and journal
ConfigMap by name, and only the verbs the target's calls use, derived from the target's own
list of calls. It talks to no server:

  pushdeploy rbac --env production | kubectl apply -f -

A deploy needs neither pods' logs nor exec, so that Role leaves them out. --operator
prints a Role of its own (pushdeploy-<app>-<env>-operator) that adds get pods/log and
create pods/exec, for the account an operator runs logs and exec with:

  pushdeploy rbac --env production --operator --service-account oncall | kubectl apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			x, err := c.environments(cmd, env)
			if err != nil {
				return err
			}
			b, err := x.RBAC(cmd.Context(), env, serviceAccount, operator)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	c.flags(cmd)
	cmd.Flags().StringVar(&env, "env", "", "the environment, as the file names it (without a file: its name)")
	_ = cmd.MarkFlagRequired("env")
	cmd.Flags().BoolVar(&operator, "operator", false, "also grant what logs and exec need (get pods/log, create pods/exec), as a Role of its own for an operator's account")
	cmd.Flags().StringVar(&serviceAccount, "service-account", "ci-deployer", "the ServiceAccount the RoleBinding grants the Role to, in the environment's namespace")
	return cmd
}
