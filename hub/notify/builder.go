package notify

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"reflect"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/nats-io/nats.go"

	"github.com/warren-mesh/warren/hub/notify/target"
	"github.com/warren-mesh/warren/hub/notify/target/exec"
	"github.com/warren-mesh/warren/hub/notify/target/file"
	"github.com/warren-mesh/warren/hub/notify/target/gotify"
	logtarget "github.com/warren-mesh/warren/hub/notify/target/log"
	"github.com/warren-mesh/warren/hub/notify/target/mqtt"
	"github.com/warren-mesh/warren/hub/notify/target/natspub"
	"github.com/warren-mesh/warren/hub/notify/target/ntfy"
	"github.com/warren-mesh/warren/hub/notify/target/pushover"
	"github.com/warren-mesh/warren/hub/notify/target/smtp"
	"github.com/warren-mesh/warren/hub/notify/target/webhook"
)

// TargetEnv is what a target constructor may use from the hub.
type TargetEnv struct {
	// Name is the target's name in the configuration.
	Name string
	// Logger is the notifier's logger, tagged with the target name.
	Logger *slog.Logger
	// NC is the hub's own NATS connection (for the nats target).
	NC *nats.Conn
	// HubMQTT is the hub's own loopback MQTT listener (Deps.HubMQTT), the
	// mqtt target's broker when it sets no url.
	HubMQTT string
	// HTTPClient is shared by the HTTP targets; per-request timeouts come
	// from the targets' own settings.
	HTTPClient *http.Client
	// Standalone is Deps.Standalone: no hub connection will come.
	Standalone bool
}

// TargetType validates and builds the targets of one `type:`.
type TargetType struct {
	// Validate decodes the target's `config:` map strictly and checks it.
	Validate func(raw map[string]any) error
	// New builds a target from its `config:` map.
	New func(raw map[string]any, env TargetEnv) (target.Notifier, error)
	// Timeout reports the target's own per-attempt timeout, if it has
	// one; the engine's default attempt timeout is then that plus a grace
	// period. Nil: none.
	Timeout func(raw map[string]any) time.Duration
}

// validatable is a target package's Config.
type validatable interface{ Validate() error }

// targetType wires one target package: def is its DefaultConfig, build its
// New adapted to TargetEnv.
func targetType[C validatable, N target.Notifier](def func() C, build func(C, TargetEnv) (N, error)) TargetType {
	decodeTo := func(raw map[string]any) (C, error) {
		c := def()
		if err := decodeStrict(raw, &c); err != nil {
			return c, err
		}
		return c, c.Validate()
	}
	return TargetType{
		Validate: func(raw map[string]any) error {
			_, err := decodeTo(raw)
			return err
		},
		New: func(raw map[string]any, env TargetEnv) (target.Notifier, error) {
			c, err := decodeTo(raw)
			if err != nil {
				return nil, err
			}
			n, err := build(c, env)
			if err != nil {
				return nil, err
			}
			return n, nil
		},
		Timeout: func(raw map[string]any) time.Duration {
			c, err := decodeTo(raw)
			if err != nil {
				return 0
			}
			return durationField(c, "Timeout")
		},
	}
}

// builtinTargetTypes maps each `type:` to its package. This is the one
// place target packages are wired in; there is no init() registry.
func builtinTargetTypes() map[string]TargetType {
	return map[string]TargetType{
		"file": targetType(file.DefaultConfig, func(c file.Config, _ TargetEnv) (*file.Notifier, error) {
			return file.New(c)
		}),
		"log": targetType(logtarget.DefaultConfig, func(c logtarget.Config, env TargetEnv) (*logtarget.Notifier, error) {
			return logtarget.New(c, env.Logger)
		}),
		"exec": targetType(exec.DefaultConfig, func(c exec.Config, _ TargetEnv) (*exec.Notifier, error) {
			return exec.New(c)
		}),
		"webhook": targetType(webhook.DefaultConfig, func(c webhook.Config, env TargetEnv) (*webhook.Notifier, error) {
			return webhook.New(c, env.HTTPClient)
		}),
		"ntfy": targetType(ntfy.DefaultConfig, func(c ntfy.Config, env TargetEnv) (*ntfy.Notifier, error) {
			return ntfy.New(c, env.HTTPClient)
		}),
		"gotify": targetType(gotify.DefaultConfig, func(c gotify.Config, env TargetEnv) (*gotify.Notifier, error) {
			return gotify.New(c, env.HTTPClient)
		}),
		"pushover": targetType(pushover.DefaultConfig, func(c pushover.Config, env TargetEnv) (*pushover.Notifier, error) {
			return pushover.New(c, env.HTTPClient)
		}),
		"smtp": targetType(smtp.DefaultConfig, func(c smtp.Config, _ TargetEnv) (*smtp.Notifier, error) {
			return smtp.New(c)
		}),
		"mqtt": targetType(mqtt.DefaultConfig, func(c mqtt.Config, env TargetEnv) (*mqtt.Notifier, error) {
			if c.URL == "" {
				if env.HubMQTT == "" {
					return nil, errors.New("url: missing, and the hub runs no MQTT listener (mqtt.listen) to publish through: set url")
				}
				c.URL = env.HubMQTT
			}
			return mqtt.New(c, env.Logger)
		}),
		"nats": targetType(natspub.DefaultConfig, func(c natspub.Config, env TargetEnv) (target.Notifier, error) {
			if env.NC == nil {
				if env.Standalone {
					return unavailable{}, nil
				}
				return nil, errors.New("the hub's NATS connection is not available to the notifier")
			}
			n, err := natspub.New(c, env.NC)
			if err != nil {
				return nil, err
			}
			return n, nil
		}),
	}
}

// decodeStrict decodes a target's config map into c: unknown keys are
// errors, durations are strings like "10s".
func decodeStrict(raw map[string]any, c any) error {
	if raw == nil {
		raw = map[string]any{}
	}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		ErrorUnused:      true,
		WeaklyTypedInput: true,
		DecodeHook:       durationHook,
		Result:           c,
	})
	if err != nil {
		return err
	}
	if err := dec.Decode(raw); err != nil {
		var errs []error
		for _, l := range decodeErrorLines(err) {
			errs = append(errs, errors.New(l))
		}
		return errors.Join(errs...)
	}
	return nil
}

// durationField returns the time.Duration field name of struct v, or 0.
func durationField(v any, name string) time.Duration {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Struct {
		return 0
	}
	f := rv.FieldByName(name)
	if !f.IsValid() || f.Type() != durationType {
		return 0
	}
	return time.Duration(f.Int())
}

// buildTargets constructs every target of c; errors are joined.
func buildTargets(c *compiled, types map[string]TargetType, env TargetEnv) (map[string]target.Notifier, error) {
	all := builtinTargetTypes()
	for k, v := range types {
		all[k] = v
	}
	out := make(map[string]target.Notifier, len(c.targets))
	var errs []error
	for _, name := range sortedKeys(c.targets) {
		tc := c.targets[name]
		e := env
		e.Name = name
		if e.Logger != nil {
			e.Logger = e.Logger.With("target", name)
		}
		n, err := all[tc.Type].New(tc.Config, e)
		if err != nil {
			errs = append(errs, prefixErrors("targets."+name+".config", err))
			continue
		}
		out[name] = n
	}
	return out, errors.Join(errs...)
}

// timeoutGrace is added to a target's own timeout to make the engine's
// default attempt timeout.
const timeoutGrace = 5 * time.Second

// unavailable stands in for a target that needs the running hub.
type unavailable struct{}

func (unavailable) Notify(context.Context, *target.Message) (bool, error) {
	return false, errors.New("this target sends through the running hub's connection; not available outside `hub run`")
}
