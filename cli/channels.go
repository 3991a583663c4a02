package cli

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"ordercore"
	"ordercore/channel/alipay"
	"ordercore/channel/sim"
	"ordercore/channel/stripe"
	"ordercore/channel/wechat"
)

// channelFlags configures the payment channels of `ordercore serve`. A channel is enabled
// by its first flag; secrets and keys come from flags or files, never from defaults.
type channelFlags struct {
	simURL, simMerchant, simAPIKey string
	simSecrets                     []string

	stripeKey     string
	stripeSecrets []string

	alipayAppID, alipaySeller, alipayKey, alipayPublicKey, alipayGateway string

	wechatAppID, wechatMchID, wechatSerial, wechatKey, wechatAPIv3Key, wechatBase string
	wechatPlatformKeys                                                            []string
}

func (c *channelFlags) register(f *pflag.FlagSet) {
	f.StringVar(&c.simURL, "sim-url", "", "enable the simulator channel (ordercore paysim serve) at this URL")
	f.StringVar(&c.simMerchant, "sim-merchant", "m1", "simulator merchant id")
	f.StringVar(&c.simAPIKey, "sim-api-key", "", "simulator API key")
	f.StringSliceVar(&c.simSecrets, "sim-secret", nil, "simulator notification secret (repeat during a rotation)")

	f.StringVar(&c.stripeKey, "stripe-key", "", "enable Stripe with this secret API key")
	f.StringSliceVar(&c.stripeSecrets, "stripe-webhook-secret", nil, "Stripe webhook signing secret whsec_... (repeat during a rotation)")

	f.StringVar(&c.alipayAppID, "alipay-app-id", "", "enable Alipay for this application id")
	f.StringVar(&c.alipaySeller, "alipay-seller-id", "", "Alipay seller id (pid) that notifications must name")
	f.StringVar(&c.alipayKey, "alipay-private-key", "", "PEM file: the application's RSA private key")
	f.StringVar(&c.alipayPublicKey, "alipay-public-key", "", "PEM file: the Alipay public key")
	f.StringVar(&c.alipayGateway, "alipay-gateway", "", "Alipay gateway URL (default the production gateway)")

	f.StringVar(&c.wechatMchID, "wechat-mchid", "", "enable WeChat Pay for this merchant id")
	f.StringVar(&c.wechatAppID, "wechat-appid", "", "WeChat app id")
	f.StringVar(&c.wechatSerial, "wechat-serial", "", "serial of the merchant API certificate")
	f.StringVar(&c.wechatKey, "wechat-private-key", "", "PEM file: the merchant API private key")
	f.StringSliceVar(&c.wechatPlatformKeys, "wechat-platform-key", nil, "SERIAL=PEM-FILE of a platform public key or certificate (repeat during a rotation)")
	f.StringVar(&c.wechatAPIv3Key, "wechat-apiv3-key", "", "the 32-byte APIv3 key")
	f.StringVar(&c.wechatBase, "wechat-base-url", "", "WeChat Pay API URL (default the production API)")
}

// build returns the enabled channels. A channel's settings without the flag that enables
// it are refused: a forgotten --stripe-key would otherwise start a server without Stripe.
func (c *channelFlags) build() ([]ordercore.Channel, error) {
	for _, g := range []struct {
		enabler string
		on      bool
		others  map[string]bool
	}{
		{"--sim-url", c.simURL != "", map[string]bool{"--sim-api-key": c.simAPIKey != "", "--sim-secret": len(c.simSecrets) > 0}},
		{"--stripe-key", c.stripeKey != "", map[string]bool{"--stripe-webhook-secret": len(c.stripeSecrets) > 0}},
		{"--alipay-app-id", c.alipayAppID != "", map[string]bool{"--alipay-private-key": c.alipayKey != "", "--alipay-public-key": c.alipayPublicKey != "",
			"--alipay-seller-id": c.alipaySeller != "", "--alipay-gateway": c.alipayGateway != ""}},
		{"--wechat-mchid", c.wechatMchID != "", map[string]bool{"--wechat-appid": c.wechatAppID != "", "--wechat-serial": c.wechatSerial != "",
			"--wechat-private-key": c.wechatKey != "", "--wechat-platform-key": len(c.wechatPlatformKeys) > 0,
			"--wechat-apiv3-key": c.wechatAPIv3Key != "", "--wechat-base-url": c.wechatBase != ""}},
	} {
		if g.on {
			continue
		}
		for flag, set := range g.others {
			if set {
				return nil, fmt.Errorf("%s is set but %s is not: the channel is enabled by %s", flag, g.enabler, g.enabler)
			}
		}
	}
	var out []ordercore.Channel
	add := func(ch ordercore.Channel, err error) error {
		if err != nil {
			return err
		}
		out = append(out, ch)
		return nil
	}
	if c.simURL != "" {
		if err := add(sim.New(sim.Config{BaseURL: c.simURL, MerchantID: c.simMerchant, APIKey: c.simAPIKey, Secrets: c.simSecrets})); err != nil {
			return nil, fmt.Errorf("sim channel: %w", err)
		}
	}
	if c.stripeKey != "" {
		if err := add(stripe.New(stripe.Config{SecretKey: c.stripeKey, WebhookSecrets: c.stripeSecrets})); err != nil {
			return nil, fmt.Errorf("stripe channel: %w", err)
		}
	}
	if c.alipayAppID != "" {
		key, err := privateKey(c.alipayKey)
		if err != nil {
			return nil, fmt.Errorf("alipay channel: --alipay-private-key: %w", err)
		}
		pub, err := publicKey(c.alipayPublicKey)
		if err != nil {
			return nil, fmt.Errorf("alipay channel: --alipay-public-key: %w", err)
		}
		if err := add(alipay.New(alipay.Config{AppID: c.alipayAppID, SellerID: c.alipaySeller, PrivateKey: key, AlipayPublicKey: pub, GatewayURL: c.alipayGateway})); err != nil {
			return nil, fmt.Errorf("alipay channel: %w", err)
		}
	}
	if c.wechatMchID != "" {
		key, err := privateKey(c.wechatKey)
		if err != nil {
			return nil, fmt.Errorf("wechat channel: --wechat-private-key: %w", err)
		}
		platform := map[string]*rsa.PublicKey{}
		for _, kv := range c.wechatPlatformKeys {
			serial, file, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("wechat channel: --wechat-platform-key wants SERIAL=FILE, got %q", kv)
			}
			if platform[serial], err = publicKey(file); err != nil {
				return nil, fmt.Errorf("wechat channel: --wechat-platform-key %s: %w", serial, err)
			}
		}
		if err := add(wechat.New(wechat.Config{AppID: c.wechatAppID, MchID: c.wechatMchID, MchCertSerial: c.wechatSerial, MchPrivateKey: key,
			PlatformKeys: platform, APIv3Key: []byte(c.wechatAPIv3Key), BaseURL: c.wechatBase})); err != nil {
			return nil, fmt.Errorf("wechat channel: %w", err)
		}
	}
	return out, nil
}

func pemBlock(path string) (*pem.Block, error) {
	if path == "" {
		return nil, errors.New("a PEM key file is required")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s holds no PEM block", path)
	}
	return b, nil
}

// privateKey reads an RSA private key in PKCS#1 or PKCS#8 PEM.
func privateKey(path string) (*rsa.PrivateKey, error) {
	b, err := pemBlock(path)
	if err != nil {
		return nil, err
	}
	if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: not an RSA private key: %w", path, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA private key", path)
	}
	return rk, nil
}

// publicKey reads an RSA public key in PKIX or PKCS#1 PEM, or from a certificate.
func publicKey(path string) (*rsa.PublicKey, error) {
	b, err := pemBlock(path)
	if err != nil {
		return nil, err
	}
	var k any
	switch b.Type {
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: not a readable certificate: %w", path, err)
		}
		k = cert.PublicKey
	case "RSA PUBLIC KEY":
		k, err = x509.ParsePKCS1PublicKey(b.Bytes)
	default:
		k, err = x509.ParsePKIXPublicKey(b.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: not an RSA public key or certificate (PEM %q)", path, b.Type)
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA public key", path)
	}
	return rk, nil
}
