package notify

import (
	"os"
	"slices"
)

// expandEnv replaces ${ENV:NAME} in every value of secs. A variable that is
// set is substituted (and reported: the value now stands inline, so a
// secret should move to a *_file key); one that is not set is left as it
// is and reported.
func (im *mqttwarnImporter) expandEnv(secs []iniSection, lookup func(string) (string, bool)) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var set, unset []string
	for si := range secs {
		for ki := range secs[si].kv {
			kv := &secs[si].kv[ki]
			kv.value = envRef.ReplaceAllStringFunc(kv.value, func(ref string) string {
				name := envRef.FindStringSubmatch(ref)[1]
				v, ok := lookup(name)
				where := "[" + secs[si].name + "] " + kv.key + ": $" + name
				if !ok {
					unset = append(unset, where)
					return ref
				}
				set = append(set, where)
				return v
			})
		}
	}
	slices.Sort(set)
	slices.Sort(unset)
	for _, w := range set {
		im.warn("%s substituted from this environment; the value is now inline (a secret belongs in a *_file key)", w)
	}
	for _, w := range unset {
		im.warn("%s is not set; ${ENV:...} left as is", w)
	}
}
