package wechat

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"ordercore"
)

// algorithmGCM is the only resource algorithm of API v3 notifications.
const algorithmGCM = "AEAD_AES_256_GCM"

// envelope is the signed, unencrypted part of a notification.
type envelope struct {
	ID           string `json:"id"`
	CreateTime   string `json:"create_time"`
	EventType    string `json:"event_type"`
	ResourceType string `json:"resource_type"`
	Resource     *struct {
		Algorithm      string `json:"algorithm"`
		Ciphertext     string `json:"ciphertext"`
		AssociatedData string `json:"associated_data"`
		Nonce          string `json:"nonce"`
		OriginalType   string `json:"original_type"`
	} `json:"resource"`
}

// ParseNotification authenticates a WeChat Pay notification and reads it. Nothing in the
// body is read before the signature over it verifies:
//
//  1. Wechatpay-Timestamp, -Nonce, -Signature and -Serial are present, else
//     EInvalidSignature;
//  2. a WECHATPAY/SIGNTEST/ signature (WeChat Pay's probe) is EInvalidSignature;
//  3. a timestamp more than Config.Window away from now is EStaleNotification;
//  4. an unknown serial is EInvalidSignature;
//  5. SHA256withRSA over "timestamp\nnonce\nbody\n" must verify with that platform key,
//     else EInvalidSignature.
//
// Then the resource is decrypted with the APIv3 key (a tag that does not verify is
// EInvalidSignature: the resource is forged), the merchant and app are checked
// (EMerchantMismatch), and anything authentic that cannot be read is
// EMalformedNotification. EventID is WeChat Pay's notification id.
func (c *Channel) ParseNotification(h http.Header, body []byte, now time.Time) (ordercore.Notification, error) {
	if err := c.verify(h, body, now); err != nil {
		return ordercore.Notification{}, err
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMalformedNotification, "body is not a notification: %v", err)
	}
	if env.ID == "" || env.EventType == "" || env.Resource == nil {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMalformedNotification, "notification lacks id, event_type or resource")
	}
	if env.Resource.Algorithm != algorithmGCM {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMalformedNotification, "resource algorithm %q, want %s", env.Resource.Algorithm, algorithmGCM)
	}
	plain, err := c.decrypt(env.Resource.Ciphertext, env.Resource.Nonce, env.Resource.AssociatedData)
	if errors.As(err, new(errForged)) {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EInvalidSignature, "resource does not authenticate with the APIv3 key")
	} else if err != nil {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMalformedNotification, "resource: %v", err)
	}
	switch {
	case strings.HasPrefix(env.EventType, "TRANSACTION."):
		return c.paymentNotification(env.ID, plain)
	case env.EventType == "REFUND.SUCCESS" || env.EventType == "REFUND.ABNORMAL" || env.EventType == "REFUND.CLOSED":
		return c.refundNotification(env.ID, env.EventType, plain)
	}
	return ordercore.Notification{}, ordercore.Errorf(ordercore.EMalformedNotification, "unknown event_type %q", env.EventType)
}

// paymentNotification reads the decrypted resource of a TRANSACTION.* notification.
func (c *Channel) paymentNotification(id string, plain []byte) (ordercore.Notification, error) {
	var t transaction
	if err := json.Unmarshal(plain, &t); err != nil {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMalformedNotification, "transaction resource: %v", err)
	}
	// An authentic notification can still be another merchant's or another app's: several
	// merchants may share a notify URL or an APIv3 key. Its trade numbers mean nothing here.
	if t.MchID != c.cfg.MchID || t.AppID != c.cfg.AppID {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMerchantMismatch, "notification is for merchant %q app %q", t.MchID, t.AppID)
	}
	p, err := t.payment()
	if err != nil {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMalformedNotification, "transaction resource: %v", err)
	}
	return ordercore.Notification{EventID: id, Payment: &p}, nil
}

// refundNotification reads the decrypted resource of a REFUND.* notification. Its status
// is refund_status, or the event type's when WeChat Pay leaves it out.
func (c *Channel) refundNotification(id, eventType string, plain []byte) (ordercore.Notification, error) {
	var r refund
	if err := json.Unmarshal(plain, &r); err != nil {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMalformedNotification, "refund resource: %v", err)
	}
	// Refund notifications carry no appid: the merchant is all there is to check.
	if r.MchID != c.cfg.MchID {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMerchantMismatch, "notification is for merchant %q", r.MchID)
	}
	status := r.RefundStatus
	if status == "" {
		status = strings.TrimPrefix(eventType, "REFUND.")
	}
	cr, err := r.channelRefund(status)
	if err != nil {
		return ordercore.Notification{}, ordercore.Errorf(ordercore.EMalformedNotification, "refund resource: %v", err)
	}
	return ordercore.Notification{EventID: id, Refund: &cr}, nil
}
