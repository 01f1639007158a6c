// Package cfgload loads a typed configuration struct strictly through viper:
// defaults come from the struct itself, then a YAML file, then PREFIX_* env
// variables, then command-line flags. Unknown keys in the file or the
// environment are errors that name the key. Nothing outside cmd/ and this
// package imports viper.
package cfgload

import (
	"errors"
	"fmt"
	"github.com/warren-mesh/warren/internal/secretfile"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Options says where configuration comes from.
type Options struct {
	// File is the YAML config file; empty means none.
	File string
	// EnvPrefix is the env variable prefix, e.g. "EDGE" for EDGE_UDP_LISTEN.
	EnvPrefix string
	// Flags maps config keys ("udp.listen") to flags that override them
	// when the flag was set on the command line.
	Flags map[string]*pflag.Flag
	// IgnoreEnv lists env variables with the prefix that are not config
	// keys (e.g. EDGE_CONFIG naming the file).
	IgnoreEnv []string
}

// Load fills cfg, a pointer to a struct already holding its defaults.
func Load(opts Options, cfg any) error {
	rv := reflect.ValueOf(cfg)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return errors.New("cfgload: cfg must be a pointer to a struct")
	}
	leaves := map[string]any{}
	branches := map[string]bool{}
	flatten("", rv.Elem(), leaves, branches)

	v := viper.New()
	for k, def := range leaves {
		v.SetDefault(k, def)
	}
	if opts.File != "" {
		v.SetConfigFile(opts.File)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return fmt.Errorf("config file %s: %w", opts.File, err)
		}
		raw := viper.New()
		raw.SetConfigFile(opts.File)
		raw.SetConfigType("yaml")
		if err := raw.ReadInConfig(); err != nil {
			return fmt.Errorf("config file %s: %w", opts.File, err)
		}
		if err := checkKeys(raw.AllSettings(), "", leaves, branches); err != nil {
			return fmt.Errorf("config file %s: %w", opts.File, err)
		}
	}
	if opts.EnvPrefix != "" {
		v.SetEnvPrefix(opts.EnvPrefix)
		v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
		v.AutomaticEnv()
		if err := checkEnv(opts.EnvPrefix, leaves, opts.IgnoreEnv); err != nil {
			return err
		}
	}
	for key, f := range opts.Flags {
		if _, ok := leaves[key]; !ok {
			return fmt.Errorf("cfgload: flag %s bound to unknown key %q", f.Name, key)
		}
		if f.Changed {
			if err := v.BindPFlag(key, f); err != nil {
				return fmt.Errorf("flag %s: %w", f.Name, err)
			}
		}
	}
	dec := viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	))
	strict := func(c *mapstructure.DecoderConfig) { c.ErrorUnused = true }
	if err := v.Unmarshal(cfg, dec, strict); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// Keys lists every configuration key of cfg (a pointer to a struct), sorted;
// used for documentation and tests.
func Keys(cfg any) []string {
	leaves := map[string]any{}
	flatten("", reflect.ValueOf(cfg).Elem(), leaves, map[string]bool{})
	keys := make([]string, 0, len(leaves))
	for k := range leaves {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var durationType = reflect.TypeOf(time.Duration(0))

// KeyName is the config key of struct field f: its mapstructure tag, or
// its lower-cased name; ok is false for unexported fields and tag "-".
func KeyName(f reflect.StructField) (name string, ok bool) {
	if !f.IsExported() {
		return "", false
	}
	name, _, _ = strings.Cut(f.Tag.Get("mapstructure"), ",")
	if name == "-" {
		return "", false
	}
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name, true
}

// flatten records every leaf key with its default value. Structs are
// branches; everything else (scalars, slices, maps) is a leaf.
func flatten(prefix string, v reflect.Value, leaves map[string]any, branches map[string]bool) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name, ok := KeyName(t.Field(i))
		if !ok {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && fv.Type() != durationType {
			branches[key] = true
			flatten(key, fv, leaves, branches)
			continue
		}
		leaves[key] = fv.Interface()
	}
}

func checkKeys(m map[string]any, prefix string, leaves map[string]any, branches map[string]bool) error {
	var errs []error
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		key := strings.ToLower(k)
		if prefix != "" {
			key = prefix + "." + key
		}
		if _, ok := leaves[key]; ok {
			continue
		}
		if branches[key] {
			sub, ok := m[k].(map[string]any)
			if !ok {
				errs = append(errs, fmt.Errorf("key %q: want a mapping of keys, got %T", key, m[k]))
				continue
			}
			if err := checkKeys(sub, key, leaves, branches); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		errs = append(errs, fmt.Errorf("unknown key %q%s", key, suggest(key, leaves)))
	}
	return errors.Join(errs...)
}

func checkEnv(prefix string, leaves map[string]any, ignore []string) error {
	known := map[string]bool{}
	for k := range leaves {
		known[prefix+"_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))] = true
	}
	for _, name := range ignore {
		known[name] = true
	}
	var errs []error
	env := os.Environ()
	sort.Strings(env)
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, prefix+"_") && !known[name] {
			errs = append(errs, fmt.Errorf("unknown environment variable %s (no such config key)", name))
		}
	}
	return errors.Join(errs...)
}

// suggest names the closest known key when one is near enough.
func suggest(key string, leaves map[string]any) string {
	best, bestD := "", 4
	for k := range leaves {
		if d := distance(key, k); d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ReadSecret reads a secret from a file named by a *_file key. The error
// names the key and the file, never the content; the rule is
// internal/secretfile's (one trailing newline cut).
func ReadSecret(key, path string) (string, error) { return secretfile.Read(key, path) }
