package alipay

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"testing"
)

// vectorKeyPEM is a throwaway 2048-bit key made for this test with
// `openssl genrsa 2048`; it signs nothing real.
const vectorKeyPEM = `-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCuJPxmim8p3fCZ
zFM4XsWa0sHiW+lDOf9SkRlNv+HhxISi8tmE68/giWx4JOZWfanBHl7sG2Lswu8v
zk5bQezXTwWienyBF4c1IhC3KDUy+3JBhWtEtLD7pR1Uc3F9CqWbW7euCAFgstvW
yOrdXQy8DS74/VTDUewdYnz5Ht/7E/HUXxXpJiNaNEbDAk/dxbEjYPsh19Tu+sN4
a6P+yIQwqA+naHVYrDct06xIJ3+sn3DpSnr1p71UBgpsSY6LYNQdiUc3148vdHgA
ckwqD8tvw7mGph2Z6uLak5mBH1uYj2E4pfEvcW18PMr+rP8+fvpVkP8En6XoUcrP
2y7qEHvJAgMBAAECggEAKveBNyOs7d2OwcPCPMRVaS/bGqim0yl6L7sRTTes2fGM
8E+PD9bHAZWmp7YjBvAWdEm0Dflr3RLzxQ3YE3geobkjoMUr9wYBHED9ctN+3Mdh
l3z9zIPwrwY8SFv7gmigF8b3eP8Mp/k5eLM2D8wnmjZ+gnyu70pFQbLNNwJBLUeD
NG3d69cxGRR8+NtOC4upXvyyYmR8fi34c1lt05wkFXakpbSd0wsFdoUUz+n+lAvA
WCOJUrRggQLf9DokUQCNZAsrbeoByidPt+SrSjM7fBYMLcPI2GegF292nuqeneVU
JXOj9cIorR7LaxGTDQaZxqWIW5QtCCMHppgvCKIcIQKBgQD0RY8ZJGxgrfApx7zO
i1GQox6JrXnLElwMZ7E5wNnfgq+ArBVpbvjtziJWtqAxuVg6b8n+Hep7V499QSlF
z15Fww6YRwMBSzeUwCbMWR76CP+jx00ZkAPj/oRoejErrFrjZgMoGTgDNrraMIKI
9Up+2lWKwc7fxyzdvqyFrpXpJQKBgQC2gXcSDQ8shRrStYs+6PylUca+WR91EGoM
cOyNLpuH/6bFDr7uiNP8sR9wZ0bMSY5i5n1kpd+4Ys9B6xnQ7tkSEIEWdqZETYiQ
z9HcWuP/zKKUqHSd45T6oa3DBZS2nII5k0/mSkb97h/eukPzB+uUgeyYj7/jOS0J
CDFDa8eA1QKBgEQHi07pQfW6+4PnSMINMu4hP8QAOEdCGbiquETpXMRO1Sn0wxHW
AiXYnt+fhQXUJKpBr/PBySgIvsGXgDMdCZhMNqhaPpABrr0Strt6ppHkJ64pN2PD
JBI/NAkU3tTW74kdRAvK2jqq52cU04XpKpIhpGk8iKzx/6DSFaI1eTKxAoGAI+9J
6pv3qORsa6CjUje9xy9a2o/hycL5nol9ii7rINQNmi9VGNKIKvEVJ6SuI/s3tfF8
Lx0Z98w80tXft2vQAeaOBEZIZpp9kUXaJHEhA3TfbjXdAFmXM+IxvHyU03/thDil
OsrVP5prXAeA6ZFdqVgLpd5oAe14GJcsXAIUviECgYEAvfWpLiCVcGGpNdyEwEQV
VGqEpGRFCe/nGjKcHERvTr6mHABe3RGinTy9YkYmRA9/RkjEY2dPSDA2lv6zKMli
kAeZXFtiCjz6/ivJnde04k+21ueFww1JmKbL8dFCjvuy/2TiHfuc45pjyh1Vycza
yZd3qZkO0i5Hq0rxCP9za6k=
-----END PRIVATE KEY-----`

// vectorSignature is the signature of vectorContent by vectorKeyPEM, computed outside Go with
//
//	printf '%s' "$CONTENT" | openssl dgst -sha256 -sign key.pem | base64 -w0
//
// PKCS#1 v1.5 signatures are deterministic, so signRSA2 must produce these exact bytes.
const vectorSignature = "Sh0CGAxrNJCPlt+1/e7urmZglBDR35YpVtJyb7mIlrZpFQlJUUZ3/CVA6AZPcCmOggeRDV+L0uwdyA2Rq6b1+At6E3H63ojQPW4uswzg4FnlHJeGBodEfoiMaWH3z+kZGjUl3WyozpTKbOcd8mUr/YKkG49aOxdQB730GEHjbfzktECtro7+aub7aL1F/KoUfJt54K4mh2INsG/Zu/DiHKmpAcY+oHLkMp2hwh+V7JnEF5f/7w2QH/+4Xfj8itIMuxaR4eZfW+85JFurBiX9tiWlAnY93EQN4RmNvuAPi1jM6dn6FvtA3fxLGWJCzGlVEStlM1MROIhfL8RjKlgiqg=="

// vectorParams are the parameters of an alipay.trade.query request, plus an empty one that
// the signature must leave out and a sign that it must not cover.
var vectorParams = map[string]string{
	"app_id":         "2014072300007148",
	"method":         "alipay.trade.query",
	"format":         "JSON",
	"charset":        "utf-8",
	"sign_type":      "RSA2",
	"timestamp":      "2014-07-24 03:07:50",
	"version":        "1.0",
	"biz_content":    `{"out_trade_no":"20150320010101001","subject":"Iphone6 16G"}`,
	"app_auth_token": "",
	"sign":           "not covered",
}

// vectorContent is the string to sign, written out by hand: names sorted, empty values
// and sign left out, values as they are (not URL-encoded, the space stays a space).
const vectorContent = `app_id=2014072300007148` +
	`&biz_content={"out_trade_no":"20150320010101001","subject":"Iphone6 16G"}` +
	`&charset=utf-8&format=JSON&method=alipay.trade.query&sign_type=RSA2` +
	`&timestamp=2014-07-24 03:07:50&version=1.0`

func vectorKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	block, _ := pem.Decode([]byte(vectorKeyPEM))
	if block == nil {
		t.Fatal("vector key is not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("parse vector key: %v", err)
	}
	return k.(*rsa.PrivateKey)
}

func TestSignKnownVector(t *testing.T) {
	t.Parallel()
	key := vectorKey(t)

	if got := requestContent(vectorParams); got != vectorContent {
		t.Fatalf("requestContent:\n got %s\nwant %s", got, vectorContent)
	}
	got, err := signRSA2(key, requestContent(vectorParams))
	if err != nil {
		t.Fatal(err)
	}
	if got != vectorSignature {
		t.Errorf("signRSA2 = %s\nwant (openssl) %s", got, vectorSignature)
	}

	// And check it with crypto/rsa directly, over the hand-written string.
	raw, err := base64.StdEncoding.DecodeString(got)
	if err != nil {
		t.Fatalf("signature is not base64: %v", err)
	}
	digest := sha256.Sum256([]byte(vectorContent))
	if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, digest[:], raw); err != nil {
		t.Errorf("crypto/rsa does not verify the signature: %v", err)
	}
}

func TestNotifyContent(t *testing.T) {
	t.Parallel()
	params := map[string]string{
		"sign":        "x",
		"sign_type":   "RSA2",
		"trade_no":    "2013112011001004330000121536",
		"app_id":      "2014072300007148",
		"subject":     "a b+c 中文",
		"passback":    "",
		"notify_type": "trade_status_sync",
	}
	// sign and sign_type are left out; an empty value stays in, as Alipay sent it.
	want := "app_id=2014072300007148&notify_type=trade_status_sync&passback=&subject=a b+c 中文&trade_no=2013112011001004330000121536"
	if got := notifyContent(params); got != want {
		t.Errorf("notifyContent:\n got %s\nwant %s", got, want)
	}
}

func TestVerifyNodeEscapedSlash(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	// The signature covers the node with plain slashes; the body escapes them.
	sig, err := signRSA2(keys.alipay, `{"code":"10000","msg":"Success","url":"https://example.com/a"}`)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyNode(&keys.alipay.PublicKey, []byte(`{"code":"10000","msg":"Success","url":"https:\/\/example.com\/a"}`), sig); err != nil {
		t.Errorf("escaped slashes: %v", err)
	}
	if err := verifyNode(&keys.alipay.PublicKey, []byte(`{"code":"10000","msg":"Success","url":"https:\/\/example.com\/b"}`), sig); err == nil {
		t.Error("a changed node verified")
	}
}
