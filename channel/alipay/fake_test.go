package alipay

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testAppID    = "2021000000000001"
	testSellerID = "2088000000000001"
)

// keySet holds the keys of the tests: the merchant's application key (signs requests), the
// key Alipay signs with, and a stranger's.
type keySet struct {
	merchant, alipay, other *rsa.PrivateKey
}

// testKeys makes the keys once per test binary: 2048-bit generation is the slow part.
var testKeys = sync.OnceValue(func() keySet {
	gen := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	}
	return keySet{merchant: gen(), alipay: gen(), other: gen()}
})

// plainContent is the string to sign, computed the simple way, independently of the
// package: drop the named parameters (and, for requests, empty values), sort, join.
func plainContent(params map[string]string, dropEmpty bool, drop ...string) string {
	var names []string
	for k, v := range params {
		skip := dropEmpty && v == ""
		for _, d := range drop {
			if k == d {
				skip = true
			}
		}
		if !skip {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var pairs []string
	for _, k := range names {
		pairs = append(pairs, k+"="+params[k])
	}
	return strings.Join(pairs, "&")
}

func plainSign(key *rsa.PrivateKey, content string) string {
	digest := sha256.Sum256([]byte(content))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func plainVerify(key *rsa.PublicKey, content, sig string) bool {
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return false
	}
	digest := sha256.Sum256([]byte(content))
	return rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], raw) == nil
}

// call is one request the fake gateway received and authenticated.
type call struct {
	Method string
	Params map[string]string
	Biz    map[string]string
}

// fakeGateway emulates the open-platform gateway: it checks each request's common
// parameters and its RSA2 signature with the merchant's public key, then answers with the
// node that answer returns for it, signed with the Alipay key the way the gateway signs:
// over the node's bytes exactly as they appear in the body.
type fakeGateway struct {
	t      *testing.T
	answer func(c call) string // the raw <method>_response node
	// signWith signs answers (the Alipay key when nil); unsigned leaves sign out.
	signWith *rsa.PrivateKey
	unsigned bool
	// sleep delays every answer, or until the client gives up.
	sleep time.Duration

	mu    sync.Mutex
	calls []call
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		g.t.Errorf("gateway: method %s, want POST", r.Method)
	}
	if err := r.ParseForm(); err != nil {
		g.t.Errorf("gateway: form: %v", err)
	}
	if g.sleep > 0 {
		// After the body is read: only then does the server notice a client that hangs up,
		// and end r.Context().
		select {
		case <-time.After(g.sleep):
		case <-r.Context().Done():
			return
		}
	}
	params := make(map[string]string)
	for k, vs := range r.PostForm {
		if len(vs) != 1 {
			g.t.Errorf("gateway: parameter %s given %d times", k, len(vs))
		}
		params[k] = vs[0]
	}
	method := params["method"]
	if err := checkCommon(params, method); err != "" {
		g.t.Errorf("gateway: %s", err)
	}
	if !plainVerify(&testKeys().merchant.PublicKey, plainContent(params, true, "sign"), params["sign"]) {
		g.t.Errorf("gateway: request signature does not verify")
		g.respond(w, "error_response", `{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature","sub_msg":"验签出错"}`)
		return
	}
	var biz map[string]string
	if err := json.Unmarshal([]byte(params["biz_content"]), &biz); err != nil {
		g.t.Errorf("gateway: biz_content: %v", err)
	}
	c := call{Method: method, Params: params, Biz: biz}
	g.mu.Lock()
	g.calls = append(g.calls, c)
	g.mu.Unlock()
	g.respond(w, strings.ReplaceAll(method, ".", "_")+"_response", g.answer(c))
}

// checkCommon checks the common parameters of a request, and returns what is wrong.
func checkCommon(params map[string]string, method string) string {
	want := map[string]string{
		"app_id": testAppID, "format": "JSON", "charset": "utf-8", "sign_type": "RSA2", "version": "1.0",
	}
	for k, v := range want {
		if params[k] != v {
			return k + " = " + params[k] + ", want " + v
		}
	}
	if method == "" {
		return "method is missing"
	}
	if _, err := time.ParseInLocation("2006-01-02 15:04:05", params["timestamp"], time.FixedZone("CST", 8*3600)); err != nil {
		return "timestamp " + params["timestamp"] + " is not yyyy-MM-dd HH:mm:ss"
	}
	return ""
}

func (g *fakeGateway) respond(w http.ResponseWriter, name, node string) {
	body := `{"` + name + `":` + node
	if !g.unsigned {
		key := g.signWith
		if key == nil {
			key = testKeys().alipay
		}
		body += `,"sign":"` + plainSign(key, node) + `"`
	}
	body += "}"
	w.Header().Set("Content-Type", "text/html;charset=utf-8") // what the gateway sends
	_, _ = w.Write([]byte(body))
}

func (g *fakeGateway) recorded() []call {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]call(nil), g.calls...)
}

// setup starts a fake gateway answering with answer and returns a channel pointed at it.
func setup(t *testing.T, answer func(c call) string) (*Channel, *fakeGateway) {
	t.Helper()
	g := &fakeGateway{t: t, answer: answer}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return newChannel(t, srv.URL+"/gateway.do"), g
}

func newChannel(t *testing.T, gateway string) *Channel {
	t.Helper()
	keys := testKeys()
	c, err := New(Config{
		AppID:           testAppID,
		SellerID:        testSellerID,
		PrivateKey:      keys.merchant,
		AlipayPublicKey: &keys.alipay.PublicKey,
		GatewayURL:      gateway,
		Timeout:         5 * time.Second,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// byMethod answers each method with its node.
func byMethod(nodes map[string]string) func(c call) string {
	return func(c call) string {
		if n, ok := nodes[c.Method]; ok {
			return n
		}
		return `{"code":"40004","msg":"Business Failed","sub_code":"isv.invalid-method","sub_msg":"不存在的方法名"}`
	}
}

// mustParseURL is url.Parse for test inputs.
func mustParseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return u
}

// rawAnswer answers every request with the body write builds, for answers the fake
// gateway would not produce.
func rawAnswer(write func(body *strings.Builder)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var b strings.Builder
		write(&b)
		_, _ = w.Write([]byte(b.String()))
	})
}
