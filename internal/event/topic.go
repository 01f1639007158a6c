package event

import (
	"errors"
	"fmt"
	"strings"
)

// ErrTopic is wrapped by every topic conversion error.
var ErrTopic = errors.New("invalid mqtt topic")

// TopicToSubject converts an MQTT topic name (no wildcards) to the NATS
// subject nats-server's MQTT gateway uses for it: levels are joined by '.',
// a '.' inside a level becomes "//", and empty levels are kept with '/'
// markers, so SubjectToTopic(TopicToSubject(t)) == t.
func TopicToSubject(topic string) (string, error) {
	return convertTopic(topic, false)
}

// FilterToSubjects converts an MQTT topic filter to the NATS subjects that
// cover it. A trailing "#" matches the parent level too, so "a/#" becomes
// both "a" and "a.>" (as the MQTT gateway subscribes).
func FilterToSubjects(filter string) ([]string, error) {
	s, err := convertTopic(filter, true)
	if err != nil {
		return nil, err
	}
	if s == ">" {
		return []string{">"}, nil
	}
	if strings.HasSuffix(s, ".>") {
		return []string{strings.TrimSuffix(s, ".>"), s}, nil
	}
	return []string{s}, nil
}

func convertTopic(t string, wildcards bool) (string, error) {
	if t == "" {
		return "", fmt.Errorf("%w: empty", ErrTopic)
	}
	var b strings.Builder
	b.Grow(len(t) + 4)
	last := byte(0) // last byte written
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch c {
		case '/':
			switch {
			case i == 0 || last == '.':
				// empty level before this separator
				b.WriteString("/.")
				last = '.'
			case i == len(t)-1 || t[i+1] == '/':
				// empty level after this separator
				b.WriteString("./")
				last = '/'
			default:
				b.WriteByte('.')
				last = '.'
			}
		case '.':
			b.WriteString("//")
			last = '/'
		case ' ', '\t', '\n', '\r', '\f', 0x7f, 0:
			return "", fmt.Errorf("%w: %q contains whitespace or a control character", ErrTopic, t)
		case '+', '#':
			if !wildcards {
				return "", fmt.Errorf("%w: %q: wildcards are not allowed in a topic name", ErrTopic, t)
			}
			if c == '#' && i != len(t)-1 {
				return "", fmt.Errorf("%w: %q: '#' must be the last character", ErrTopic, t)
			}
			if i > 0 && t[i-1] != '/' || i < len(t)-1 && t[i+1] != '/' {
				return "", fmt.Errorf("%w: %q: a wildcard must fill a whole level", ErrTopic, t)
			}
			if c == '+' {
				b.WriteByte('*')
				last = '*'
			} else {
				b.WriteByte('>')
				last = '>'
			}
		case '*', '>':
			return "", fmt.Errorf("%w: %q contains a NATS wildcard character", ErrTopic, t)
		default:
			b.WriteByte(c)
			last = c
		}
	}
	s := b.String()
	if last == '.' {
		s += "/"
	}
	return s, nil
}

// SubjectToTopic converts a NATS subject made by TopicToSubject back to the
// MQTT topic.
func SubjectToTopic(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '/':
			if i < len(s)-1 && (s[i+1] == '.' || s[i+1] == '/') {
				if s[i+1] == '.' {
					b.WriteByte('/')
				} else {
					b.WriteByte('.')
				}
				i++
			}
			// a lone '/' marks an empty level and writes nothing
		case '.':
			b.WriteByte('/')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
