package notify

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// quietHours is a compiled QuietHoursConfig.
type quietHours struct {
	name      string
	loc       *time.Location
	intervals []quietInterval
}

type quietInterval struct {
	start, end int           // minutes after local midnight
	days       [7]bool       // by time.Weekday; all true when unrestricted
	src        QuietInterval // for reports
}

var weekdayNames = map[string]time.Weekday{
	"sun": time.Sunday, "sunday": time.Sunday,
	"mon": time.Monday, "monday": time.Monday,
	"tue": time.Tuesday, "tuesday": time.Tuesday,
	"wed": time.Wednesday, "wednesday": time.Wednesday,
	"thu": time.Thursday, "thursday": time.Thursday,
	"fri": time.Friday, "friday": time.Friday,
	"sat": time.Saturday, "saturday": time.Saturday,
}

func parseClock(s string) (int, error) {
	t, err := time.Parse("15:04", strings.TrimSpace(s))
	if err != nil {
		if strings.TrimSpace(s) == "24:00" {
			return 24 * 60, nil
		}
		return 0, fmt.Errorf("%q is not a time like 22:00", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

func parseWeekdays(list []string) ([7]bool, error) {
	var days [7]bool
	if len(list) == 0 {
		for i := range days {
			days[i] = true
		}
		return days, nil
	}
	for _, item := range list {
		item = strings.ToLower(strings.TrimSpace(item))
		from, to, isRange := strings.Cut(item, "-")
		a, ok := weekdayNames[strings.TrimSpace(from)]
		if !ok {
			return days, fmt.Errorf("%q is not a weekday (mon, tue, ... or a range like mon-fri)", item)
		}
		if !isRange {
			days[a] = true
			continue
		}
		b, ok := weekdayNames[strings.TrimSpace(to)]
		if !ok {
			return days, fmt.Errorf("%q is not a weekday range like mon-fri", item)
		}
		for d := a; ; d = (d + 1) % 7 {
			days[d] = true
			if d == b {
				break
			}
		}
	}
	return days, nil
}

func compileQuiet(name string, qc QuietHoursConfig, defLoc *time.Location) (*quietHours, error) {
	key := "quiet_hours." + name
	q := &quietHours{name: name, loc: defLoc}
	var errs []error
	if name == "none" {
		errs = append(errs, fmt.Errorf("%s: the name \"none\" is reserved (quiet: [none] disables quiet hours)", key))
	}
	if qc.TimeZone != "" {
		loc, err := time.LoadLocation(qc.TimeZone)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.time_zone: unknown time zone %q", key, qc.TimeZone))
		} else {
			q.loc = loc
		}
	}
	if len(qc.Intervals) == 0 {
		errs = append(errs, fmt.Errorf("%s.intervals: empty; add at least one {start, end}", key))
	}
	for i, iv := range qc.Intervals {
		ik := fmt.Sprintf("%s.intervals[%d]", key, i)
		qi := quietInterval{src: iv}
		var err error
		if qi.start, err = parseClock(iv.Start); err != nil || iv.Start == "" {
			errs = append(errs, fmt.Errorf("%s.start: %q is not a time like 22:00", ik, iv.Start))
		}
		if qi.end, err = parseClock(iv.End); err != nil || iv.End == "" {
			errs = append(errs, fmt.Errorf("%s.end: %q is not a time like 07:00", ik, iv.End))
		}
		if qi.days, err = parseWeekdays(iv.Weekdays); err != nil {
			errs = append(errs, fmt.Errorf("%s.weekdays: %w", ik, err))
		}
		q.intervals = append(q.intervals, qi)
	}
	return q, errors.Join(errs...)
}

// active reports whether t falls in one of the intervals.
func (q *quietHours) active(t time.Time) bool {
	lt := t.In(q.loc)
	m := lt.Hour()*60 + lt.Minute()
	today := lt.Weekday()
	yesterday := (today + 6) % 7
	for _, iv := range q.intervals {
		if iv.start < iv.end {
			if iv.days[today] && m >= iv.start && m < iv.end {
				return true
			}
			continue
		}
		// Runs past midnight (or a whole day when start == end): the part
		// before midnight belongs to today's interval, the part after it
		// to yesterday's.
		if iv.days[today] && m >= iv.start {
			return true
		}
		if iv.days[yesterday] && m < iv.end {
			return true
		}
	}
	return false
}
