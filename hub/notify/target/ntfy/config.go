package ntfy

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Config configures an ntfy target (https://ntfy.sh or a self-hosted
// server).
type Config struct {
	// URL is the ntfy server's base URL. Default "https://ntfy.sh".
	URL string `mapstructure:"url"`
	// Topic is the ntfy topic, 1-64 characters of A-Z a-z 0-9 _ -.
	// Required. On a public server the topic acts as a password, so it is
	// redacted from errors.
	Topic string `mapstructure:"topic"`
	// Tags are sent in the Tags header (emoji short codes or words).
	Tags []string `mapstructure:"tags"`
	// Click is the URL opened when the notification is tapped.
	Click string `mapstructure:"click"`
	// Icon is the URL of the notification icon.
	Icon string `mapstructure:"icon"`
	// Markdown marks the message as Markdown.
	Markdown bool `mapstructure:"markdown"`
	// Token is an access token sent as a bearer token. Prefer TokenFile.
	Token string `mapstructure:"token"`
	// TokenFile holds the access token.
	TokenFile string `mapstructure:"token_file"`
	// Username enables basic auth with Password or PasswordFile.
	Username string `mapstructure:"username"`
	// Password is the basic-auth password. Prefer PasswordFile.
	Password string `mapstructure:"password"`
	// PasswordFile holds the basic-auth password.
	PasswordFile string `mapstructure:"password_file"`
	// Timeout bounds one request. Default 10s.
	Timeout time.Duration `mapstructure:"timeout"`
}

// DefaultConfig returns the public server and a 10s timeout. Topic must be
// set.
func DefaultConfig() Config {
	return Config{URL: "https://ntfy.sh", Timeout: 10 * time.Second}
}

// Validate checks c; errors name the offending key.
func (c Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.URL); c.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, errors.New("url: must be an http or https server URL, e.g. https://ntfy.sh"))
	}
	if !validTopic(c.Topic) {
		errs = append(errs, errors.New("topic: must be 1-64 characters of A-Z a-z 0-9 _ -"))
	}
	for i, tag := range c.Tags {
		if tag == "" || containsAny(tag, ",\r\n\x00") {
			errs = append(errs, fmt.Errorf("tags[%d]: empty or contains a comma or line break", i))
		}
	}
	for key, v := range map[string]string{"click": c.Click, "icon": c.Icon} {
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); err != nil || u.Scheme == "" || containsAny(v, "\r\n\x00") {
			errs = append(errs, fmt.Errorf("%s: not an absolute URL", key))
		}
	}
	if c.Token != "" && c.TokenFile != "" {
		errs = append(errs, errors.New("token and token_file: set only one"))
	}
	if c.Password != "" && c.PasswordFile != "" {
		errs = append(errs, errors.New("password and password_file: set only one"))
	}
	if (c.Password != "" || c.PasswordFile != "") && c.Username == "" {
		errs = append(errs, errors.New("username: missing; a password needs a username"))
	}
	if c.Username != "" && (c.Token != "" || c.TokenFile != "") {
		errs = append(errs, errors.New("username: basic auth and a token both set; choose one"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout: %s must be positive", c.Timeout))
	}
	return errors.Join(errs...)
}

func validTopic(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func containsAny(s, chars string) bool {
	for _, c := range chars {
		for _, r := range s {
			if r == c {
				return true
			}
		}
	}
	return false
}
