package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// Character classes of GPT-2's pre-tokenization pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// implemented by hand: Go's regexp has no lookahead, and a hand-written scanner is
// several times faster than a regexp besides.
const (
	classOther = iota // [^\s\p{L}\p{N}], and any byte that is not valid UTF-8
	classLetter
	classNumber
	classSpace
)

// classAt returns the class and width of the rune starting at s[i]. \s is Unicode's
// White_Space property (unicode.IsSpace), as in Oniguruma, which Hugging Face
// tokenizers uses; an invalid UTF-8 byte counts as one "other" character.
func classAt(s string, i int) (class, size int) {
	c := s[i]
	if c < utf8.RuneSelf {
		return asciiClass[c], 1
	}
	r, size := utf8.DecodeRuneInString(s[i:])
	switch {
	case r == utf8.RuneError && size == 1:
		return classOther, 1
	case unicode.IsLetter(r):
		return classLetter, size
	case unicode.IsNumber(r):
		return classNumber, size
	case unicode.IsSpace(r):
		return classSpace, size
	}
	return classOther, size
}

var asciiClass = func() (t [utf8.RuneSelf]int) {
	for c := range t {
		r := rune(c)
		switch {
		case unicode.IsLetter(r):
			t[c] = classLetter
		case unicode.IsNumber(r):
			t[c] = classNumber
		case unicode.IsSpace(r):
			t[c] = classSpace
		default:
			t[c] = classOther
		}
	}
	return t
}()

// nextPiece returns the end of the pre-token that starts at s[i] (i < len(s)). The
// alternatives are tried in the pattern's order, each greedy, as a backtracking regexp
// engine would.
func nextPiece(s string, i int) int {
	// 's 't 're 've 'm 'll 'd
	if s[i] == '\'' && i+1 < len(s) {
		switch s[i+1] {
		case 's', 't', 'm', 'd':
			return i + 2
		case 'r', 'v':
			if i+2 < len(s) && s[i+2] == 'e' {
				return i + 3
			}
		case 'l':
			if i+2 < len(s) && s[i+2] == 'l' {
				return i + 3
			}
		}
	}
	// " ?X+" for X in letters, numbers, others: an optional U+0020 then a run of one class.
	j := i
	if s[i] == ' ' && i+1 < len(s) {
		if c, _ := classAt(s, i+1); c != classSpace {
			j = i + 1
		}
	}
	class, size := classAt(s, j)
	if class != classSpace {
		j += size
		for j < len(s) {
			c, n := classAt(s, j)
			if c != class {
				break
			}
			j += n
		}
		return j
	}
	// \s+(?!\S) then \s+: a whitespace run at the end of the text is one token; one
	// followed by a non-space gives all but its last character (that one then starts
	// the next token, e.g. as the optional space of " ?\p{L}+"); a single whitespace
	// character followed by a non-space is a token by itself.
	last := j
	for j < len(s) {
		c, n := classAt(s, j)
		if c != classSpace {
			break
		}
		last = j
		j += n
	}
	if j < len(s) && last > i {
		return last
	}
	return j
}
