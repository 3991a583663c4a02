package httpapi

import (
	"bytes"
	"encoding/json"
)

// duplicateKey reports the first name that appears twice in one object of the JSON text
// body. Go's decoder takes the last of them, another reader might take the first, and
// the client cannot have meant both: such a body is refused rather than read one way.
// A body that is not JSON reports nothing its decoder would not: what is wrong with it is
// the decoder's to say.
//
// It scans the bytes once without allocating for the bodies the API takes (names
// without escapes, objects of a few names); a name with an escape, or an object of many
// names, is checked by decodeDuplicateKey instead.
func duplicateKey(body []byte) (string, bool) {
	type frame struct {
		object, wantKey bool
		first           int // the object's names are names[first:]
	}
	var stackBuf [16]frame
	var namesBuf [32][]byte
	stack, names := stackBuf[:0], namesBuf[:0]
	for i := 0; i < len(body); i++ {
		switch c := body[i]; c {
		case '{':
			stack = append(stack, frame{object: true, wantKey: true, first: len(names)})
		case '[':
			stack = append(stack, frame{first: len(names)})
		case '}', ']':
			if len(stack) == 0 {
				return "", false
			}
			names = names[:stack[len(stack)-1].first]
			stack = stack[:len(stack)-1]
		case ',':
			if len(stack) > 0 && stack[len(stack)-1].object {
				stack[len(stack)-1].wantKey = true
			}
		case '"':
			end := i + 1
			for end < len(body) && body[end] != '"' {
				if body[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(body) {
				return "", false // an unterminated string: not JSON
			}
			s := body[i+1 : end]
			i = end
			if len(stack) == 0 || !stack[len(stack)-1].object || !stack[len(stack)-1].wantKey {
				continue // a value
			}
			top := &stack[len(stack)-1]
			top.wantKey = false
			if bytes.IndexByte(s, '\\') >= 0 || len(names)-top.first >= 16 {
				return decodeDuplicateKey(body) // escapes to undo, or many names
			}
			for _, n := range names[top.first:] {
				if bytes.Equal(n, s) {
					return string(s), true
				}
			}
			names = append(names, s)
		}
	}
	return "", false
}

// decodeDuplicateKey is duplicateKey by encoding/json's tokens: names unescaped, a set
// per object.
func decodeDuplicateKey(body []byte) (string, bool) {
	type frame struct {
		object, wantKey bool
		keys            map[string]struct{}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var stack []frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false // the end, or not JSON: not this check's to report
		}
		var top *frame
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, frame{object: true, wantKey: true})
			case '[':
				stack = append(stack, frame{})
			default: // '}' or ']': the value in its parent is complete
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].object {
					stack[len(stack)-1].wantKey = true
				}
			}
		case string:
			if top != nil && top.object && top.wantKey {
				if _, seen := top.keys[t]; seen {
					return t, true
				}
				if top.keys == nil {
					top.keys = map[string]struct{}{}
				}
				top.keys[t] = struct{}{}
				top.wantKey = false
				continue
			}
			if top != nil && top.object {
				top.wantKey = true
			}
		default:
			if top != nil && top.object {
				top.wantKey = true
			}
		}
	}
}
