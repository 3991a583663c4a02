package wechat

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"ordercore"
)

// authScheme is the Authorization scheme of API v3: SHA256withRSA with a 2048-bit key.
const authScheme = "WECHATPAY2-SHA256-RSA2048"

// signTestPrefix starts the signature of WeChat Pay's probe traffic: requests it sends to
// check that a merchant really verifies signatures. They must fail verification.
const signTestPrefix = "WECHATPAY/SIGNTEST/"

// Headers that carry WeChat Pay's signature on answers and notifications.
const (
	headerTimestamp = "Wechatpay-Timestamp"
	headerNonce     = "Wechatpay-Nonce"
	headerSignature = "Wechatpay-Signature"
	headerSerial    = "Wechatpay-Serial"
)

// nonceBytes is the entropy of a request nonce; its hex form is 32 characters, the
// longest nonce_str WeChat Pay accepts.
const nonceBytes = 16

// authorization returns the Authorization header of one request. The signed message is
// "METHOD\nURL\ntimestamp\nnonce\nbody\n" where URL is the path with its query, exactly as
// sent: WeChat Pay rebuilds the message from what it receives.
func (c *Channel) authorization(method, requestURI string, body []byte, now time.Time) (string, error) {
	var raw [nonceBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("nonce: %w", err)
	}
	nonce := hex.EncodeToString(raw[:])
	ts := strconv.FormatInt(now.Unix(), 10)
	msg := method + "\n" + requestURI + "\n" + ts + "\n" + nonce + "\n" + string(body) + "\n"
	digest := sha256.Sum256([]byte(msg))
	sig, err := rsa.SignPKCS1v15(rand.Reader, c.cfg.MchPrivateKey, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("sign request: %w", err)
	}
	return fmt.Sprintf(`%s mchid="%s",nonce_str="%s",signature="%s",timestamp="%s",serial_no="%s"`,
		authScheme, c.cfg.MchID, nonce, base64.StdEncoding.EncodeToString(sig), ts, c.cfg.MchCertSerial), nil
}

// verify authenticates bytes signed by WeChat Pay (an answer or a notification) from
// their headers, in the order that does the cheapest and most telling checks first. It
// returns nil or an *ordercore.Error coded EInvalidSignature or EStaleNotification; the
// body has not been read when it fails.
func (c *Channel) verify(h http.Header, body []byte, now time.Time) *ordercore.Error {
	ts, nonce, sig, serial := h.Get(headerTimestamp), h.Get(headerNonce), h.Get(headerSignature), h.Get(headerSerial)
	switch {
	case ts == "":
		return ordercore.Errorf(ordercore.EInvalidSignature, "header %s is missing", headerTimestamp)
	case nonce == "":
		return ordercore.Errorf(ordercore.EInvalidSignature, "header %s is missing", headerNonce)
	case sig == "":
		return ordercore.Errorf(ordercore.EInvalidSignature, "header %s is missing", headerSignature)
	case serial == "":
		return ordercore.Errorf(ordercore.EInvalidSignature, "header %s is missing", headerSerial)
	case strings.HasPrefix(sig, signTestPrefix):
		// A probe never carries a real signature; rejecting it early keeps it out of the
		// stale and unknown-serial counts, where it would look like an attack or an outage.
		return ordercore.Errorf(ordercore.EInvalidSignature, "signature probe")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ordercore.Errorf(ordercore.EInvalidSignature, "header %s is not a unix time", headerTimestamp)
	}
	// The window bounds how long a captured, validly signed message can be replayed; the
	// caller's dedupe handles replays within it.
	if skew := now.Sub(time.Unix(sec, 0)).Abs(); skew > c.cfg.Window {
		return ordercore.Errorf(ordercore.EStaleNotification, "timestamp is %s away from now, over the %s window", skew.Round(time.Second), c.cfg.Window)
	}
	key, ok := c.cfg.PlatformKeys[serial]
	if !ok {
		// A production deployment that downloads platform certificates refreshes them once
		// on an unknown serial before rejecting: WeChat Pay may start signing with a new key
		// before the merchant hears of it. Here the keys come from the configuration, so a
		// rotation is done by configuring the old and the new key side by side until the
		// old one is retired.
		return ordercore.Errorf(ordercore.EInvalidSignature, "unknown platform key serial %q", serial)
	}
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return ordercore.Errorf(ordercore.EInvalidSignature, "signature is not base64")
	}
	digest := sha256.Sum256(signedMessage(ts, nonce, body))
	if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], raw); err != nil {
		return ordercore.Errorf(ordercore.EInvalidSignature, "signature does not verify with platform key %s", serial)
	}
	return nil
}

// signedMessage is what WeChat Pay signs on answers and notifications: the timestamp, the
// nonce and the raw body, each followed by a newline.
func signedMessage(ts, nonce string, body []byte) []byte {
	msg := make([]byte, 0, len(ts)+len(nonce)+len(body)+3)
	msg = append(msg, ts...)
	msg = append(msg, '\n')
	msg = append(msg, nonce...)
	msg = append(msg, '\n')
	msg = append(msg, body...)
	return append(msg, '\n')
}

// gcmNonceBytes is the size of the nonce of a notification's resource (AES-GCM's standard).
const gcmNonceBytes = 12

// errForged marks a resource whose GCM tag does not verify: whoever made it does not hold
// the APIv3 key, so it is not WeChat Pay's, whatever the outer signature says.
type errForged struct{ error }

// decrypt opens an AEAD_AES_256_GCM resource: ciphertext is base64 of the sealed bytes
// (ciphertext followed by the 16-byte tag), associatedData authenticated alongside. It
// returns an errForged when the tag does not verify and another error when the resource
// cannot even be tried (bad base64, a nonce of the wrong size).
func (c *Channel) decrypt(ciphertext, nonce, associatedData string) ([]byte, error) {
	sealed, err := base64.StdEncoding.DecodeString(ciphertext)
	if err != nil {
		return nil, fmt.Errorf("ciphertext is not base64: %w", err)
	}
	if len(nonce) != gcmNonceBytes {
		return nil, fmt.Errorf("nonce has %d bytes, want %d", len(nonce), gcmNonceBytes)
	}
	// A cipher per call: it costs a key expansion, and leaves no shared state to reason
	// about under concurrent notifications.
	block, err := aes.NewCipher(c.cfg.APIv3Key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	plain, err := aead.Open(nil, []byte(nonce), sealed, []byte(associatedData))
	if err != nil {
		return nil, errForged{fmt.Errorf("resource does not authenticate with the APIv3 key: %w", err)}
	}
	return plain, nil
}
