package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/warren-mesh/warren/internal/cfgload"
)

// PrintConfig writes cfg, a config struct decoded by mapstructure, as YAML
// (nested mappings, flow-style lists) that the daemon reads back as a
// config file. Values of keys that look like secrets are redacted; *_file
// keys only name files and are shown. Top-level keys in skip are left out
// (the caller describes them).
func PrintConfig(w io.Writer, cfg any, skip ...string) {
	printStruct(w, reflect.ValueOf(cfg), "", skip)
}

var durationType = reflect.TypeOf(time.Duration(0))

func printStruct(w io.Writer, v reflect.Value, indent string, skip []string) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name, ok := cfgload.KeyName(t.Field(i))
		if !ok || slices.Contains(skip, name) {
			continue
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && fv.Type() != durationType {
			fmt.Fprintf(w, "%s%s:\n", indent, name)
			printStruct(w, fv, indent+"  ", nil)
			continue
		}
		fmt.Fprintf(w, "%s%s: %s\n", indent, name, yamlValue(name, fv))
	}
}

// secretKey reports whether a key holds a secret itself (not a file name).
func secretKey(name string) bool {
	if strings.HasSuffix(name, "_file") || strings.HasSuffix(name, "_files") {
		return false
	}
	for _, s := range []string{"password", "secret", "token", "key"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

func yamlValue(name string, v reflect.Value) string {
	if secretKey(name) && !v.IsZero() {
		return `"<redacted>"`
	}
	switch {
	case v.Type() == durationType:
		return fmt.Sprintf("%q", time.Duration(v.Int()).String())
	case v.Kind() == reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = flowValue(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return flowValue(v)
}

// flowValue encodes a scalar or a struct as YAML flow (JSON is valid YAML).
func flowValue(v reflect.Value) string {
	if v.Kind() == reflect.Struct && v.Type() != durationType {
		t := v.Type()
		var parts []string
		for i := 0; i < t.NumField(); i++ {
			name, ok := cfgload.KeyName(t.Field(i))
			if !ok {
				continue
			}
			parts = append(parts, fmt.Sprintf("%q: %s", name, yamlValue(name, v.Field(i))))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	if v.Type() == durationType {
		return fmt.Sprintf("%q", time.Duration(v.Int()).String())
	}
	b, err := json.Marshal(v.Interface())
	if err != nil {
		return fmt.Sprintf("%q", fmt.Sprint(v.Interface()))
	}
	return string(b)
}
