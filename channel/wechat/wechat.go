package wechat

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"time"

	"ordercore"
)

// Defaults of a Config.
const (
	// BaseURLDefault is WeChat Pay's main API domain; it routes to the nearest access point.
	BaseURLDefault = "https://api.mch.weixin.qq.com"
	// WindowDefault is the replay window WeChat Pay's documentation asks merchants to
	// enforce on the Wechatpay-Timestamp of notifications and answers.
	WindowDefault = 5 * time.Minute
	// NameDefault is the channel's path segment: /v1/channels/wechat/notify.
	NameDefault = "wechat"
	// APIv3KeyBytes is the size of the APIv3 key: an AES-256 key.
	APIv3KeyBytes = 32
	// RSAKeyBitsMin is the size of the keys scheme WECHATPAY2-SHA256-RSA2048 is named after;
	// a smaller key is a configuration mistake, not a choice.
	RSAKeyBitsMin = 2048
)

// Config is one merchant's WeChat Pay API v3 account.
type Config struct {
	AppID string // the app (official account, mini program, app) the trades are made for
	MchID string // the merchant id
	// MchCertSerial is the serial number of the merchant API certificate whose private key
	// is MchPrivateKey: WeChat Pay finds the public key to check our requests by it.
	MchCertSerial string
	MchPrivateKey *rsa.PrivateKey // signs requests
	// PlatformKeys maps a WeChat Pay platform certificate serial (or public key id,
	// PUB_KEY_ID_...) to its public key. Several may be configured at once: WeChat Pay
	// rotates its keys, and during a rotation either may sign.
	PlatformKeys map[string]*rsa.PublicKey
	// APIv3Key is the 32-byte AES-256-GCM key of the resources in notifications.
	APIv3Key []byte
	// BaseURL is where the API is (BaseURLDefault when empty).
	BaseURL string
	// Window bounds |now - Wechatpay-Timestamp| of notifications and answers
	// (WindowDefault when zero).
	Window time.Duration
	// Timeout bounds one outbound call (outbound.TimeoutDefault when zero).
	Timeout time.Duration
	// HTTPClient sends the calls (http.DefaultClient when nil).
	HTTPClient *http.Client
	// Name is the channel's name (NameDefault when empty).
	Name string
}

// Channel is the WeChat Pay API v3 channel of one merchant. It is safe for concurrent use:
// it holds only its configuration, which nothing changes after New.
type Channel struct {
	cfg  Config
	base string // BaseURL without a trailing slash
	// now is the clock the replay window of answers is checked against. Notifications
	// bring their own now; an outbound call has none, so it reads the wall clock.
	now func() time.Time
}

var _ ordercore.Channel = (*Channel)(nil)

// New validates cfg, fills its defaults and returns the channel.
func New(cfg Config) (*Channel, error) {
	if err := validate(&cfg); err != nil {
		return nil, fmt.Errorf("wechat: config: %w", err)
	}
	base := strings.TrimRight(cfg.BaseURL, "/")
	if u, err := url.Parse(base); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("wechat: config: BaseURL %q is not an absolute http(s) URL without a query", cfg.BaseURL)
	}
	// Copies, so that a caller changing its map or key slice later cannot race with calls
	// in flight or change what a running channel trusts.
	cfg.PlatformKeys = maps.Clone(cfg.PlatformKeys)
	cfg.APIv3Key = append([]byte(nil), cfg.APIv3Key...)
	return &Channel{cfg: cfg, base: base, now: time.Now}, nil
}

// validate checks cfg and fills its defaults.
func validate(cfg *Config) error {
	switch {
	case cfg.AppID == "":
		return errors.New("AppID is empty")
	case cfg.MchID == "":
		return errors.New("MchID is empty")
	case cfg.MchCertSerial == "":
		return errors.New("MchCertSerial is empty")
	case cfg.MchPrivateKey == nil:
		return errors.New("MchPrivateKey is nil")
	case cfg.MchPrivateKey.N.BitLen() < RSAKeyBitsMin:
		return fmt.Errorf("MchPrivateKey has %d bits, want at least %d", cfg.MchPrivateKey.N.BitLen(), RSAKeyBitsMin)
	case len(cfg.PlatformKeys) == 0:
		// Without a platform key no answer and no notification could ever be trusted.
		return errors.New("PlatformKeys is empty")
	case len(cfg.APIv3Key) != APIv3KeyBytes:
		return fmt.Errorf("APIv3Key has %d bytes, want %d", len(cfg.APIv3Key), APIv3KeyBytes)
	case cfg.Window < 0:
		return errors.New("Window is negative")
	case cfg.Timeout < 0:
		return errors.New("Timeout is negative")
	}
	for serial, key := range cfg.PlatformKeys {
		if serial == "" || key == nil {
			return fmt.Errorf("PlatformKeys has an empty serial or a nil key (serial %q)", serial)
		}
		if key.N.BitLen() < RSAKeyBitsMin {
			return fmt.Errorf("platform key %s has %d bits, want at least %d", serial, key.N.BitLen(), RSAKeyBitsMin)
		}
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = BaseURLDefault
	}
	if cfg.Window == 0 {
		cfg.Window = WindowDefault
	}
	if cfg.Name == "" {
		cfg.Name = NameDefault
	}
	return nil
}

// Name is the channel's path segment.
func (c *Channel) Name() string { return c.cfg.Name }

// Ack answers a notification that is durably recorded. WeChat Pay takes 200 or 204 with
// no body as success; anything else, or no answer within 5 s, makes it send again.
func (c *Channel) Ack(w http.ResponseWriter) {
	w.WriteHeader(http.StatusNoContent)
}
