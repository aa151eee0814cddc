package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"unicode"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pushdeploy/pushdeploy/pipeline/config"
)

// settingAnnotation marks the flags BindFlags adds, for the help's own section.
const settingAnnotation = "pushdeploy_setting"

// BindFlags adds a flag for every field of config.Settings to fs, bound to that field of s:
// the names, help and list behaviour come from the struct's tags, so the flags and the
// Dagger module's arguments are one list. A field the commands define themselves (--env) is
// left out.
func BindFlags(fs *pflag.FlagSet, s *config.Settings) {
	rv := reflect.ValueOf(s).Elem()
	for _, sf := range config.SettingFields() {
		if sf.Own {
			continue
		}
		help := flagHelp(sf.Help)
		switch p := rv.FieldByName(sf.Field).Addr().Interface().(type) {
		case *string:
			fs.StringVar(p, sf.Flag, "", help)
		case *int:
			fs.IntVar(p, sf.Flag, 0, help)
		case *bool:
			fs.BoolVar(p, sf.Flag, false, help)
		case *float64:
			fs.Float64Var(p, sf.Flag, 0, help)
		case *[]string:
			if sf.Comma {
				fs.StringSliceVar(p, sf.Flag, nil, help)
			} else {
				fs.StringArrayVar(p, sf.Flag, nil, help)
			}
		default:
			panic(fmt.Sprintf("BindFlags: config.Settings.%s has a type flags do not take", sf.Field))
		}
		_ = fs.SetAnnotation(sf.Flag, settingAnnotation, []string{"true"})
	}
}

// flagHelp is a setting's help (a sentence, as the module's comments are) in the CLI's
// style: lower-case, no full stop.
func flagHelp(h string) string {
	h = strings.TrimSuffix(h, ".")
	if len(h) > 1 && unicode.IsUpper(rune(h[0])) && !unicode.IsUpper(rune(h[1])) {
		h = string(unicode.ToLower(rune(h[0]))) + h[1:]
	}
	return h
}

// givenSettings lists the settings flags given on the command line.
func givenSettings(fs *pflag.FlagSet) []string {
	var out []string
	fs.Visit(func(f *pflag.Flag) {
		if _, ok := f.Annotations[settingAnnotation]; ok {
			out = append(out, "--"+f.Name)
		}
	})
	return out
}

// load finds the environments: the file when there is one (--file, else ./pushdeploy.yaml),
// with the settings flags given laid over environment env; else the settings flags alone,
// as one environment called env.
func (c *common) load(flags *pflag.FlagSet, env string) (*config.File, error) {
	given := givenSettings(flags)
	if !flags.Changed("file") {
		if _, err := os.Stat(c.file); errors.Is(err, fs.ErrNotExist) {
			if len(given) == 0 {
				return nil, fmt.Errorf("no %s here: give its path (--file), or describe the environment with flags (--app, --kind, --hosts, ...; see --help)", c.file)
			}
			s := c.settings
			s.Env = env
			f, err := config.FromSettings(s)
			if err != nil {
				return nil, fmt.Errorf("no %s here, so the flags describe the environment:\n%w", c.file, err)
			}
			return f, nil
		}
	}
	f, err := config.Load(c.file)
	if err != nil {
		return nil, err
	}
	if len(given) == 0 {
		return f, nil
	}
	if env == "" {
		return nil, fmt.Errorf("%s override an environment of %s: say which with --env", strings.Join(given, ", "), f.Name())
	}
	if err := f.Override(env, c.settings); err != nil {
		return nil, fmt.Errorf("overriding environment %q of %s:\n%w", env, f.Name(), err)
	}
	return f, nil
}

// settingsUsage is the usage template of the commands with settings flags: the settings get
// a section of their own after the command's flags.
const settingsUsage = `Usage:{{if .Runnable}}
  {{.UseLine}}{{end}}{{if .HasAvailableSubCommands}}
  {{.CommandPath}} [command]{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{commandFlags .LocalFlags | trimTrailingWhitespaces}}

Environment settings, without an environments file (with one, they override the
environment's values):
{{settingFlags .LocalFlags | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

Global Flags:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}
`

func init() {
	cobra.AddTemplateFunc("commandFlags", func(fs *pflag.FlagSet) string {
		part := pflag.NewFlagSet("", pflag.ContinueOnError)
		fs.VisitAll(func(f *pflag.Flag) {
			if _, ok := f.Annotations[settingAnnotation]; !ok {
				part.AddFlag(f)
			}
		})
		return part.FlagUsages()
	})
	// The settings in the struct's order, which groups them by target kind and topic.
	cobra.AddTemplateFunc("settingFlags", func(fs *pflag.FlagSet) string {
		part := pflag.NewFlagSet("", pflag.ContinueOnError)
		part.SortFlags = false
		for _, sf := range config.SettingFields() {
			if f := fs.Lookup(sf.Flag); f != nil && !sf.Own {
				part.AddFlag(f)
			}
		}
		return part.FlagUsages()
	})
}
