package tokenizer

// StreamDecoder turns a stream of token ids into text as it is generated. A character
// whose UTF-8 bytes span several tokens is held back until it is complete, so every
// piece returned is valid UTF-8, and the concatenation of all pieces (Flush included)
// equals Decode of all the ids. A StreamDecoder is not safe for concurrent use.
type StreamDecoder struct {
	t       *Tokenizer
	pending []byte // bytes of an incomplete UTF-8 sequence
	out     []byte // scratch buffer, reused
}

// NewStreamDecoder returns a decoder for one generated sequence.
func (t *Tokenizer) NewStreamDecoder() *StreamDecoder { return &StreamDecoder{t: t} }

// Add takes the next token and returns the text it completes, possibly "" (when the
// token ends inside a multi-byte character). Ill-formed bytes become U+FFFD as soon as
// they are known to be ill-formed.
func (d *StreamDecoder) Add(id int) string {
	d.pending = append(d.pending, d.t.piece(id)...)
	return d.emit(false)
}

// Flush returns what is still held back, with U+FFFD for a character left incomplete,
// and resets the decoder.
func (d *StreamDecoder) Flush() string { return d.emit(true) }

func (d *StreamDecoder) emit(final bool) string {
	if len(d.pending) == 0 {
		return ""
	}
	var rest []byte
	d.out, rest = appendValidUTF8(d.out[:0], d.pending, final)
	d.pending = append(d.pending[:0], rest...) // rest aliases pending's tail: copy is safe
	return string(d.out)
}
