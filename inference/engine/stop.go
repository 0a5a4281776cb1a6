package engine

import "strings"

// stopFilter turns the decoded text of a sequence into stable deltas: text is held
// back while it could still be the beginning of a stop string, and generation ends
// before the first complete stop string, which is never emitted.
type stopFilter struct {
	stops   []string
	text    strings.Builder // all decoded text so far
	emitted int             // bytes of text already released
}

func newStopFilter(stops []string) *stopFilter {
	f := &stopFilter{}
	for _, s := range stops {
		if s != "" {
			f.stops = append(f.stops, s)
		}
	}
	return f
}

// add appends newly decoded text. It returns the text that is now safe to release,
// and stopped=true when a stop string completed (the returned text then ends right
// before it, and nothing more may be added).
func (f *stopFilter) add(piece string) (release string, stopped bool) {
	f.text.WriteString(piece)
	all := f.text.String()
	pending := all[f.emitted:]
	// Any stop string starts at or after f.emitted: released text never holds the
	// start of one that could still complete.
	if cut := f.firstStop(pending); cut >= 0 {
		release = pending[:cut]
		f.emitted += cut
		return release, true
	}
	keep := f.heldBack(pending)
	release = pending[:len(pending)-keep]
	f.emitted += len(release)
	return release, false
}

// flush releases the held-back text at the end of generation (no stop string can
// complete any more).
func (f *stopFilter) flush() string {
	all := f.text.String()
	rest := all[f.emitted:]
	f.emitted = len(all)
	return rest
}

// result is the released text, the generation's output.
func (f *stopFilter) result() string { return f.text.String()[:f.emitted] }

// firstStop returns the byte offset in s of the earliest stop string, or -1.
func (f *stopFilter) firstStop(s string) int {
	best := -1
	for _, st := range f.stops {
		if i := strings.Index(s, st); i >= 0 && (best < 0 || i < best) {
			best = i
		}
	}
	return best
}

// heldBack returns the length of the longest suffix of s that is a proper prefix of
// some stop string.
func (f *stopFilter) heldBack(s string) int {
	longest := 0
	for _, st := range f.stops {
		max := len(st) - 1
		if max > len(s) {
			max = len(s)
		}
		for n := max; n > longest; n-- {
			if strings.HasSuffix(s, st[:n]) {
				longest = n
				break
			}
		}
	}
	return longest
}
