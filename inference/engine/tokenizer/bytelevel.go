package tokenizer

import "unicode/utf8"

// byteRunes is GPT-2's bytes_to_unicode table: every byte maps to a printable rune.
// Printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') map to themselves; the 68
// others map, in byte order, to U+0100, U+0101, ... (so ' ' becomes 'Ġ', '\n' 'Ċ').
var byteRunes = func() (t [256]rune) {
	n := 0
	for b := 0; b < 256; b++ {
		if ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF) {
			t[b] = rune(b)
		} else {
			t[b] = rune(256 + n)
			n++
		}
	}
	return t
}()

// runeBytes inverts byteRunes.
var runeBytes = func() map[rune]byte {
	m := make(map[rune]byte, 256)
	for b, r := range byteRunes {
		m[r] = byte(b)
	}
	return m
}()

// byteLevelString maps raw bytes to their byte-level form ("Ġthe" for " the").
func byteLevelString(raw string) string {
	out := make([]rune, len(raw))
	for i := 0; i < len(raw); i++ {
		out[i] = byteRunes[raw[i]]
	}
	return string(out)
}

// rawBytes maps a vocabulary token back to the bytes it stands for. A token with a
// rune outside the byte-level alphabet (possible for hand-added entries) stands for
// its own UTF-8 text, as in Hugging Face's ByteLevel decoder.
func rawBytes(token string) []byte {
	out := make([]byte, 0, len(token))
	for _, r := range token {
		b, ok := runeBytes[r]
		if !ok {
			return []byte(token)
		}
		out = append(out, b)
	}
	return out
}

// appendValidUTF8 appends buf to dst as valid UTF-8 and returns the bytes of buf it did
// not consume. Every maximal ill-formed subpart (Unicode §3.9, the policy of WHATWG's
// TextDecoder, Python and Rust's from_utf8_lossy) becomes one U+FFFD. When final is
// false, a trailing incomplete but so-far-valid sequence is held back in rest, so that
// decoding a byte stream piecewise gives exactly the same text as decoding it whole.
func appendValidUTF8(dst, buf []byte, final bool) (out, rest []byte) {
	i := 0
	for i < len(buf) {
		b := buf[i]
		if b < utf8.RuneSelf {
			dst = append(dst, b)
			i++
			continue
		}
		need, lo, hi := seqInfo(b)
		if need == 0 {
			dst = append(dst, "\uFFFD"...)
			i++
			continue
		}
		// Check continuation bytes; the first one has a narrower range for some leads.
		j := i + 1
		ok := true
		for k := 0; k < need; k++ {
			if j >= len(buf) {
				if !final {
					return dst, buf[i:]
				}
				ok = false
				break
			}
			c := buf[j]
			if k > 0 {
				lo, hi = 0x80, 0xBF
			}
			if c < lo || c > hi {
				ok = false
				break
			}
			j++
		}
		if !ok {
			dst = append(dst, "\uFFFD"...)
			i = j // skip the maximal subpart; the offending byte is examined again
			continue
		}
		dst = append(dst, buf[i:j]...)
		i = j
	}
	return dst, nil
}

// seqInfo gives, for a non-ASCII lead byte, the number of continuation bytes and the
// valid range of the first one (Unicode Table 3-7); need is 0 for a byte that cannot
// start a sequence.
func seqInfo(b byte) (need int, lo, hi byte) {
	switch {
	case 0xC2 <= b && b <= 0xDF:
		return 1, 0x80, 0xBF
	case b == 0xE0:
		return 2, 0xA0, 0xBF
	case 0xE1 <= b && b <= 0xEC, b == 0xEE, b == 0xEF:
		return 2, 0x80, 0xBF
	case b == 0xED:
		return 2, 0x80, 0x9F
	case b == 0xF0:
		return 3, 0x90, 0xBF
	case 0xF1 <= b && b <= 0xF3:
		return 3, 0x80, 0xBF
	case b == 0xF4:
		return 3, 0x80, 0x8F
	}
	return 0, 0, 0
}
