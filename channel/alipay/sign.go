package alipay

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Parameter names that the signature scheme itself uses.
const (
	paramSign     = "sign"
	paramSignType = "sign_type"
)

// signTypeRSA2 is the only algorithm this adapter speaks: SHA256withRSA, PKCS#1 v1.5.
// Alipay still accepts the SHA-1 "RSA" type from old apps; we never send or accept it.
const signTypeRSA2 = "RSA2"

// requestContent returns the string a request's signature covers: every parameter except
// sign whose value is not empty, sorted by name in byte order, joined as name=value with
// '&'. Values are the raw strings, not URL-encoded: the gateway decodes what it receives and
// rebuilds the same string. Empty values are left out because the gateway leaves them out
// (the SDKs' getSignContent does the same); sign_type is covered.
func requestContent(params map[string]string) string {
	names := make([]string, 0, len(params))
	for k, v := range params {
		if k != paramSign && v != "" {
			names = append(names, k)
		}
	}
	return joinSorted(names, params)
}

// notifyContent returns the string a notification's signature covers: every parameter
// except sign and sign_type, sorted by name in byte order, joined as name=value with '&',
// values URL-decoded. Unlike requestContent it keeps empty values, as the official SDK's
// rsaCheckV1 does: Alipay signs what it sends, so a parameter present in the body is a
// parameter under the signature, and dropping one would let it be added unsigned.
func notifyContent(params map[string]string) string {
	names := make([]string, 0, len(params))
	for k := range params {
		if k != paramSign && k != paramSignType {
			names = append(names, k)
		}
	}
	return joinSorted(names, params)
}

func joinSorted(names []string, params map[string]string) string {
	slices.Sort(names)
	var b strings.Builder
	for i, k := range names {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(params[k])
	}
	return b.String()
}

// signRSA2 signs content with key and returns the base64 signature Alipay expects.
func signRSA2(key *rsa.PrivateKey, content string) (string, error) {
	digest := sha256.Sum256([]byte(content))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// errBadSignature is the one verification failure: callers turn it into the error their
// contract asks for (EInvalidSignature for a notification, ErrOutcomeUnknown for an answer).
var errBadSignature = errors.New("signature does not verify")

// verifyRSA2 checks a base64 RSA2 signature of content with the Alipay public key.
func verifyRSA2(key *rsa.PublicKey, content []byte, sig string) error {
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return fmt.Errorf("%w: signature is not base64", errBadSignature)
	}
	digest := sha256.Sum256(content)
	if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], raw); err != nil {
		return errBadSignature
	}
	return nil
}

// verifyNode checks the signature of an answer's <method>_response node, given as the raw
// bytes the gateway sent. The signature covers those bytes exactly, so they are never
// re-serialised. Some answers escape '/' as "\/" in the node while the signature covers the
// unescaped text; the official SDK retries with "\/" replaced, and so does this.
func verifyNode(key *rsa.PublicKey, node []byte, sig string) error {
	err := verifyRSA2(key, node, sig)
	if errors.Is(err, errBadSignature) && bytes.Contains(node, []byte(`\/`)) {
		return verifyRSA2(key, bytes.ReplaceAll(node, []byte(`\/`), []byte(`/`)), sig)
	}
	return err
}
