package wechat

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Identities of the test merchant.
const (
	testAppID     = "wxd678efh567hg6787"
	testMchID     = "1900000100"
	testMchSerial = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
	serialA       = "PUB_KEY_ID_0000000000000000000000000000000A" // platform key A
	serialB       = "PUB_KEY_ID_0000000000000000000000000000000B" // platform key B, the rotation's new key
)

// testAPIv3Key is the merchant's APIv3 key: 32 bytes.
var testAPIv3Key = []byte("0123456789abcdef0123456789abcdef")

// testKeys are RSA keys generated once per test binary: 2048-bit generation is slow enough
// that every test doing it would dominate the run.
type testKeys struct {
	merchant  *rsa.PrivateKey // the merchant API key: signs our requests
	platformA *rsa.PrivateKey // WeChat Pay's platform keys: sign answers and notifications
	platformB *rsa.PrivateKey
	stranger  *rsa.PrivateKey // configured nowhere
}

var keys = sync.OnceValue(func() testKeys {
	gen := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	}
	var k testKeys
	var wg sync.WaitGroup
	for _, p := range []**rsa.PrivateKey{&k.merchant, &k.platformA, &k.platformB, &k.stranger} {
		wg.Go(func() { *p = gen() })
	}
	wg.Wait()
	return k
})

// testConfig is a valid configuration trusting platform keys A and B.
func testConfig() Config {
	k := keys()
	return Config{
		AppID:         testAppID,
		MchID:         testMchID,
		MchCertSerial: testMchSerial,
		MchPrivateKey: k.merchant,
		PlatformKeys:  map[string]*rsa.PublicKey{serialA: &k.platformA.PublicKey, serialB: &k.platformB.PublicKey},
		APIv3Key:      append([]byte(nil), testAPIv3Key...), // tests may scribble on their copy
	}
}

func newChannel(t *testing.T, cfg Config) *Channel {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func TestNewDefaults(t *testing.T) {
	t.Parallel()
	c := newChannel(t, testConfig())
	if got := c.Name(); got != "wechat" {
		t.Errorf("Name() = %q, want wechat", got)
	}
	if c.cfg.Window != 5*time.Minute {
		t.Errorf("Window = %s, want 5m", c.cfg.Window)
	}
	if c.base != "https://api.mch.weixin.qq.com" {
		t.Errorf("base = %q, want the main API domain", c.base)
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no app id", func(c *Config) { c.AppID = "" }, "AppID"},
		{"no merchant id", func(c *Config) { c.MchID = "" }, "MchID"},
		{"no certificate serial", func(c *Config) { c.MchCertSerial = "" }, "MchCertSerial"},
		{"no private key", func(c *Config) { c.MchPrivateKey = nil }, "MchPrivateKey"},
		{"1024-bit private key", func(c *Config) { c.MchPrivateKey = small }, "bits"},
		{"no platform key", func(c *Config) { c.PlatformKeys = nil }, "PlatformKeys"},
		{"nil platform key", func(c *Config) { c.PlatformKeys = map[string]*rsa.PublicKey{serialA: nil} }, "nil key"},
		{"16-byte APIv3 key", func(c *Config) { c.APIv3Key = testAPIv3Key[:16] }, "32"},
		{"negative window", func(c *Config) { c.Window = -time.Second }, "Window"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "Timeout"},
		{"relative base URL", func(c *Config) { c.BaseURL = "api.mch.weixin.qq.com" }, "BaseURL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			tt.edit(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() error = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// A channel must not see later changes to the caller's key map: it would trust a key the
// caller meant to add elsewhere, and race with notifications in flight.
func TestNewCopiesKeys(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	c := newChannel(t, cfg)
	cfg.PlatformKeys["PUB_KEY_ID_LATER"] = &keys().stranger.PublicKey
	cfg.APIv3Key[0] ^= 0xff
	if _, ok := c.cfg.PlatformKeys["PUB_KEY_ID_LATER"]; ok {
		t.Error("the channel trusts a key added to the caller's map after New")
	}
	if c.cfg.APIv3Key[0] != '0' {
		t.Error("the channel's APIv3 key changed with the caller's slice")
	}
}

func TestAck(t *testing.T) {
	t.Parallel()
	c := newChannel(t, testConfig())
	w := httptest.NewRecorder()
	c.Ack(w)
	if w.Code != http.StatusNoContent || w.Body.Len() != 0 {
		t.Errorf("Ack wrote %d with %d body bytes, want 204 with none", w.Code, w.Body.Len())
	}
}
