package gotify

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Config configures a Gotify target.
type Config struct {
	// URL is the Gotify server's base URL, e.g. https://gotify.example.com.
	// Required. Messages go to URL + "/message".
	URL string `mapstructure:"url"`
	// Token is the application token. Prefer TokenFile. One of the two is
	// required.
	Token string `mapstructure:"token"`
	// TokenFile holds the application token.
	TokenFile string `mapstructure:"token_file"`
	// Priorities maps the -2..2 scale to Gotify priorities, five values
	// for -2, -1, 0, 1, 2. Default [0, 2, 5, 8, 10] (0: silent, 4-7:
	// sound, 8 and up: high priority on Android).
	Priorities []int `mapstructure:"priorities"`
	// Markdown asks clients to render the message as Markdown.
	Markdown bool `mapstructure:"markdown"`
	// Click is a URL clients open when the notification is tapped.
	Click string `mapstructure:"click"`
	// Timeout bounds one request. Default 10s.
	Timeout time.Duration `mapstructure:"timeout"`
}

// DefaultConfig returns the default priority map and a 10s timeout. URL
// and a token must be set.
func DefaultConfig() Config {
	return Config{Priorities: []int{0, 2, 5, 8, 10}, Timeout: 10 * time.Second}
}

// Validate checks c; errors name the offending key.
func (c Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.URL); c.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, errors.New("url: must be the http or https base URL of the Gotify server"))
	}
	switch {
	case c.Token != "" && c.TokenFile != "":
		errs = append(errs, errors.New("token and token_file: set only one"))
	case c.Token == "" && c.TokenFile == "":
		errs = append(errs, errors.New("token_file: missing; set the file holding the application token"))
	}
	if len(c.Priorities) != 5 {
		errs = append(errs, fmt.Errorf("priorities: want 5 values (for -2, -1, 0, 1, 2), got %d", len(c.Priorities)))
	}
	for i, p := range c.Priorities {
		if p < 0 || p > 10 {
			errs = append(errs, fmt.Errorf("priorities[%d]: %d is outside 0..10", i, p))
		}
	}
	if c.Click != "" {
		if u, err := url.Parse(c.Click); err != nil || u.Scheme == "" {
			errs = append(errs, errors.New("click: not an absolute URL"))
		}
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout: %s must be positive", c.Timeout))
	}
	return errors.Join(errs...)
}
