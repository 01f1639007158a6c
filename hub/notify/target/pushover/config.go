package pushover

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// DefaultAPIURL is Pushover's message endpoint.
const DefaultAPIURL = "https://api.pushover.net/1/messages.json"

// Limits of Pushover's API.
const (
	// MinRetry is the shortest emergency retry interval Pushover accepts.
	MinRetry = 30 * time.Second
	// MaxExpire is the longest emergency expiry this target allows.
	MaxExpire   = 10800 * time.Second
	maxMessage  = 1024
	maxTitle    = 250
	maxURL      = 512
	maxURLTitle = 100
)

// Config configures a Pushover target. Every priority is sent as is;
// emergency (2) messages carry Retry and Expire, which Pushover requires.
type Config struct {
	// APIURL is the messages endpoint. Default DefaultAPIURL; tests point
	// it at a local server.
	APIURL string `mapstructure:"api_url"`
	// Token is the application API token. Prefer TokenFile. One of the
	// two is required.
	Token string `mapstructure:"token"`
	// TokenFile holds the application API token.
	TokenFile string `mapstructure:"token_file"`
	// UserKey is the user or group key. Prefer UserKeyFile. One of the
	// two is required.
	UserKey string `mapstructure:"user_key"`
	// UserKeyFile holds the user or group key.
	UserKeyFile string `mapstructure:"user_key_file"`
	// Device limits delivery to these device names (comma-separated).
	// Default: all of the user's devices.
	Device string `mapstructure:"device"`
	// Sound names the notification sound. Default: the user's choice.
	Sound string `mapstructure:"sound"`
	// URL is a supplementary URL shown with the message (max 512).
	URL string `mapstructure:"url"`
	// URLTitle is the title of URL (max 100).
	URLTitle string `mapstructure:"url_title"`
	// HTML sends html=1: the message may use Pushover's HTML subset.
	HTML bool `mapstructure:"html"`
	// Monospace sends monospace=1. Exclusive with HTML.
	Monospace bool `mapstructure:"monospace"`
	// Retry is how often Pushover repeats an unacknowledged emergency
	// (priority 2) message. At least 30s; default 60s.
	Retry time.Duration `mapstructure:"retry"`
	// Expire is how long Pushover keeps repeating an emergency message.
	// At most 3h (10800s); default 1h.
	Expire time.Duration `mapstructure:"expire"`
	// TTL makes Pushover delete the message from devices after this long.
	// Zero (the default) keeps it.
	TTL time.Duration `mapstructure:"ttl"`
	// Timeout bounds one request. Default 10s.
	Timeout time.Duration `mapstructure:"timeout"`
}

// DefaultConfig returns the public API URL, retry 60s, expire 1h, no TTL
// and a 10s timeout. Token and user key must be set.
func DefaultConfig() Config {
	return Config{APIURL: DefaultAPIURL, Retry: 60 * time.Second, Expire: time.Hour, Timeout: 10 * time.Second}
}

// Validate checks c; errors name the offending key.
func (c Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.APIURL); c.APIURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, errors.New("api_url: must be an http or https URL"))
	}
	errs = append(errs, oneOf("token", c.Token, c.TokenFile), oneOf("user_key", c.UserKey, c.UserKeyFile))
	if c.Retry < MinRetry {
		errs = append(errs, fmt.Errorf("retry: %s is below Pushover's minimum of 30s", c.Retry))
	}
	if c.Expire < time.Second || c.Expire > MaxExpire {
		errs = append(errs, fmt.Errorf("expire: %s must be between 1s and 3h (10800s)", c.Expire))
	}
	if c.TTL < 0 {
		errs = append(errs, fmt.Errorf("ttl: %s must not be negative", c.TTL))
	} else if c.TTL > 0 && c.TTL < time.Second {
		errs = append(errs, fmt.Errorf("ttl: %s is below one second", c.TTL))
	}
	if c.HTML && c.Monospace {
		errs = append(errs, errors.New("monospace: cannot be combined with html"))
	}
	if len([]rune(c.URL)) > maxURL {
		errs = append(errs, fmt.Errorf("url: longer than %d characters", maxURL))
	}
	if len([]rune(c.URLTitle)) > maxURLTitle {
		errs = append(errs, fmt.Errorf("url_title: longer than %d characters", maxURLTitle))
	}
	if strings.ContainsAny(c.Device, " \t\r\n") {
		errs = append(errs, errors.New("device: names are separated by commas, without spaces"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout: %s must be positive", c.Timeout))
	}
	return errors.Join(errs...)
}

func oneOf(key, inline, file string) error {
	switch {
	case inline != "" && file != "":
		return fmt.Errorf("%s and %s_file: set only one", key, key)
	case inline == "" && file == "":
		return fmt.Errorf("%s_file: missing; set the file holding the %s", key, strings.ReplaceAll(key, "_", " "))
	}
	return nil
}
