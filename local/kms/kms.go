// Package kms is a small stand-in for AWS KMS, labelled as such: enough of its JSON API
// (awsJson1_1, X-Amz-Target TrentService.*) for the local stack to make a site's seal key
// and for sessionha to wrap and unwrap data keys the way it does on AWS, through the
// SDK's own KMS client and the edge port, like LocalStack's KMS would. One Server is one
// region's KMS; keys live in memory and die with it, as the local tables do.
//
// It serves CreateKey (symmetric, SYMMETRIC_DEFAULT only), CreateAlias, DescribeKey (by
// key id, key ARN, alias name or alias ARN), GenerateDataKey, Encrypt and Decrypt, with
// KMS's rules that sessionha depends on: a ciphertext opens only under the key that made
// it and with the same encryption context (InvalidCiphertextException otherwise), and a
// Decrypt naming a KeyId other than the ciphertext's fails (IncorrectKeyException). Its
// ciphertext blobs are its own format (AWS's is opaque): "LKMS1", the key id, a 12-byte
// nonce, then AES-256-GCM of the plaintext with the canonical encryption context as
// associated data. Key policies, grants, rotation and multi-Region keys are not modelled:
// IAM is checked by the infra tests, not here. Anything else answers
// UnsupportedOperationException.
//
// It never logs: plaintext keys cross it.
package kms

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Account is the account id in the ARNs it makes, as LocalStack's default.
const Account = "000000000000"

const blobMagic = "LKMS1"

// Server is one region's KMS. It is an http.Handler; Listen serves it on 127.0.0.1.
type Server struct {
	region string

	mu      sync.Mutex
	keys    map[string]*key   // by key id
	aliases map[string]string // alias name -> key id

	requests atomic.Int64
}

type key struct {
	meta     keyMetadata
	material []byte
}

// keyMetadata is KMS's KeyMetadata, the fields the SDK reads.
type keyMetadata struct {
	AWSAccountId string
	KeyId        string
	Arn          string
	CreationDate float64
	Enabled      bool
	Description  string
	KeyUsage     string
	KeySpec      string
	KeyState     string
	Origin       string
	MultiRegion  bool
}

// New returns the KMS of region.
func New(region string) *Server {
	return &Server{region: region, keys: map[string]*key{}, aliases: map[string]string{}}
}

// Requests is how many requests it has answered.
func (s *Server) Requests() int64 { return s.requests.Load() }

// apiError is a KMS error: its code (the exception's name) and message.
type apiError struct {
	code, msg string
	status    int
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func errorf(code, format string, args ...any) *apiError {
	return &apiError{code: code, msg: fmt.Sprintf(format, args...), status: http.StatusBadRequest}
}

// ServeHTTP answers one KMS API call.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "TrentService.")
	if r.Method != http.MethodPost || !ok {
		writeError(w, errorf("UnsupportedOperationException", "want POST with X-Amz-Target TrentService.<operation>"))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, errorf("ValidationException", "read body: %v", err))
		return
	}
	var out any
	switch op {
	case "CreateKey":
		out, err = call(body, s.createKey)
	case "CreateAlias":
		out, err = call(body, s.createAlias)
	case "DescribeKey":
		out, err = call(body, s.describeKey)
	case "GenerateDataKey":
		out, err = call(body, s.generateDataKey)
	case "Encrypt":
		out, err = call(body, s.encrypt)
	case "Decrypt":
		out, err = call(body, s.decrypt)
	default:
		err = errorf("UnsupportedOperationException", "the local KMS stand-in does not serve %s", op)
	}
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = errorf("ValidationException", "%v", err)
		}
		writeError(w, ae)
		return
	}
	b, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Write(b)
}

func call[In, Out any](body []byte, f func(*In) (*Out, error)) (any, error) {
	in := new(In)
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, in); err != nil {
			return nil, errorf("SerializationException", "%v", err)
		}
	}
	return f(in)
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", e.code)
	w.WriteHeader(e.status)
	b, _ := json.Marshal(map[string]string{"__type": e.code, "message": e.msg})
	w.Write(b)
}

type createKeyIn struct {
	Description string
	KeyUsage    string
	KeySpec     string
	MultiRegion bool
}

func (s *Server) createKey(in *createKeyIn) (*struct{ KeyMetadata keyMetadata }, error) {
	if in.KeyUsage != "" && in.KeyUsage != "ENCRYPT_DECRYPT" || in.KeySpec != "" && in.KeySpec != "SYMMETRIC_DEFAULT" {
		return nil, errorf("UnsupportedOperationException", "the local KMS stand-in makes symmetric ENCRYPT_DECRYPT keys only")
	}
	if in.MultiRegion {
		return nil, errorf("UnsupportedOperationException", "the local KMS stand-in makes no multi-Region keys")
	}
	var idb [16]byte
	rand.Read(idb[:])
	h := hex.EncodeToString(idb[:])
	id := h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	k := &key{material: make([]byte, 32), meta: keyMetadata{
		AWSAccountId: Account, KeyId: id, Arn: s.arn("key/" + id), CreationDate: float64(time.Now().Unix()),
		Enabled: true, Description: in.Description, KeyUsage: "ENCRYPT_DECRYPT", KeySpec: "SYMMETRIC_DEFAULT",
		KeyState: "Enabled", Origin: "AWS_KMS",
	}}
	rand.Read(k.material)
	s.mu.Lock()
	s.keys[id] = k
	s.mu.Unlock()
	return &struct{ KeyMetadata keyMetadata }{k.meta}, nil
}

func (s *Server) arn(resource string) string {
	return "arn:aws:kms:" + s.region + ":" + Account + ":" + resource
}

type createAliasIn struct{ AliasName, TargetKeyId string }

func (s *Server) createAlias(in *createAliasIn) (*struct{}, error) {
	if !strings.HasPrefix(in.AliasName, "alias/") || strings.HasPrefix(in.AliasName, "alias/aws/") || len(in.AliasName) > 256 {
		return nil, errorf("ValidationException", "alias name %q: want alias/<name>, not alias/aws/", in.AliasName)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := s.resolveLocked(in.TargetKeyId)
	if err != nil {
		return nil, err
	}
	if _, ok := s.aliases[in.AliasName]; ok {
		return nil, errorf("AlreadyExistsException", "alias %s already exists", s.arn(in.AliasName))
	}
	s.aliases[in.AliasName] = k.meta.KeyId
	return &struct{}{}, nil
}

// resolveLocked finds a key by id, key ARN, alias name or alias ARN.
func (s *Server) resolveLocked(ref string) (*key, error) {
	if ref == "" {
		return nil, errorf("ValidationException", "KeyId is required")
	}
	id := ref
	if rest, ok := strings.CutPrefix(ref, "arn:aws:kms:"); ok {
		parts := strings.SplitN(rest, ":", 3)
		if len(parts) != 3 || parts[0] != s.region {
			return nil, errorf("NotFoundException", "%s is not a key of this region (%s)", ref, s.region)
		}
		id = parts[2]
	}
	if strings.HasPrefix(id, "alias/") {
		target, ok := s.aliases[id]
		if !ok {
			return nil, errorf("NotFoundException", "Alias %s is not found.", s.arn(id))
		}
		id = target
	}
	id = strings.TrimPrefix(id, "key/")
	k, ok := s.keys[id]
	if !ok {
		return nil, errorf("NotFoundException", "Key '%s' does not exist", s.arn("key/"+id))
	}
	return k, nil
}

func (s *Server) resolve(ref string) (*key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resolveLocked(ref)
}

type keyIDIn struct{ KeyId string }

func (s *Server) describeKey(in *keyIDIn) (*struct{ KeyMetadata keyMetadata }, error) {
	k, err := s.resolve(in.KeyId)
	if err != nil {
		return nil, err
	}
	return &struct{ KeyMetadata keyMetadata }{k.meta}, nil
}

type generateIn struct {
	KeyId             string
	KeySpec           string
	NumberOfBytes     int
	EncryptionContext map[string]string
}

type dataKeyOut struct {
	CiphertextBlob []byte
	Plaintext      []byte
	KeyId          string
}

func (s *Server) generateDataKey(in *generateIn) (*dataKeyOut, error) {
	n := in.NumberOfBytes
	switch {
	case in.KeySpec == "AES_256" && n == 0:
		n = 32
	case in.KeySpec == "AES_128" && n == 0:
		n = 16
	case in.KeySpec == "" && n >= 1 && n <= 1024:
	default:
		return nil, errorf("ValidationException", "give KeySpec AES_256 or AES_128, or NumberOfBytes 1-1024, not both")
	}
	k, err := s.resolve(in.KeyId)
	if err != nil {
		return nil, err
	}
	plain := make([]byte, n)
	rand.Read(plain)
	return &dataKeyOut{CiphertextBlob: k.seal(plain, in.EncryptionContext), Plaintext: plain, KeyId: k.meta.Arn}, nil
}

type encryptIn struct {
	KeyId             string
	Plaintext         []byte
	EncryptionContext map[string]string
}

type encryptOut struct {
	CiphertextBlob      []byte
	KeyId               string
	EncryptionAlgorithm string
}

func (s *Server) encrypt(in *encryptIn) (*encryptOut, error) {
	if len(in.Plaintext) == 0 || len(in.Plaintext) > 4096 {
		return nil, errorf("ValidationException", "Plaintext: want 1-4096 bytes, got %d", len(in.Plaintext))
	}
	k, err := s.resolve(in.KeyId)
	if err != nil {
		return nil, err
	}
	return &encryptOut{CiphertextBlob: k.seal(in.Plaintext, in.EncryptionContext), KeyId: k.meta.Arn, EncryptionAlgorithm: "SYMMETRIC_DEFAULT"}, nil
}

type decryptIn struct {
	CiphertextBlob    []byte
	KeyId             string
	EncryptionContext map[string]string
}

type decryptOut struct {
	Plaintext           []byte
	KeyId               string
	EncryptionAlgorithm string
}

func (s *Server) decrypt(in *decryptIn) (*decryptOut, error) {
	b := in.CiphertextBlob
	if len(b) < len(blobMagic)+36+12+16 || string(b[:len(blobMagic)]) != blobMagic {
		return nil, errorf("InvalidCiphertextException", "")
	}
	id := string(b[len(blobMagic) : len(blobMagic)+36])
	s.mu.Lock()
	k, ok := s.keys[id]
	s.mu.Unlock()
	if !ok {
		// On AWS a ciphertext of another region's key does not decrypt here either.
		return nil, errorf("InvalidCiphertextException", "")
	}
	if in.KeyId != "" {
		named, err := s.resolve(in.KeyId)
		if err != nil {
			return nil, err
		}
		if named != k {
			return nil, errorf("IncorrectKeyException", "The key ID in the request does not identify a CMK that can perform this operation.")
		}
	}
	plain, err := k.open(b, in.EncryptionContext)
	if err != nil {
		return nil, errorf("InvalidCiphertextException", "")
	}
	return &decryptOut{Plaintext: plain, KeyId: k.meta.Arn, EncryptionAlgorithm: "SYMMETRIC_DEFAULT"}, nil
}

// contextAD is an encryption context in canonical form: sorted pairs, length-prefixed.
func contextAD(ec map[string]string) []byte {
	var ad []byte
	for _, k := range slices.Sorted(maps.Keys(ec)) {
		for _, s := range []string{k, ec[k]} {
			ad = binary.BigEndian.AppendUint32(ad, uint32(len(s)))
			ad = append(ad, s...)
		}
	}
	return ad
}

func (k *key) aead() cipher.AEAD {
	block, _ := aes.NewCipher(k.material)
	g, _ := cipher.NewGCM(block)
	return g
}

func (k *key) seal(plain []byte, ec map[string]string) []byte {
	head := append([]byte(blobMagic), k.meta.KeyId...)
	nonce := make([]byte, 12)
	rand.Read(nonce)
	head = append(head, nonce...)
	return k.aead().Seal(head, nonce, plain, append(bytes.Clone(head[:len(blobMagic)+36]), contextAD(ec)...))
}

func (k *key) open(blob []byte, ec map[string]string) ([]byte, error) {
	hl := len(blobMagic) + 36
	return k.aead().Open(nil, blob[hl:hl+12], blob[hl+12:], append(bytes.Clone(blob[:hl]), contextAD(ec)...))
}

// Listen serves s on addr (127.0.0.1 only) until the returned server is closed.
func (s *Server) Listen(addr string) (*HTTPServer, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if host != "127.0.0.1" {
		return nil, fmt.Errorf("kms: listen on 127.0.0.1 only, not %q", host)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go hs.Serve(l)
	return &HTTPServer{srv: hs, url: "http://" + l.Addr().String()}, nil
}

// HTTPServer is a listening Server.
type HTTPServer struct {
	srv *http.Server
	url string
}

// URL is the base URL to route KMS requests to.
func (h *HTTPServer) URL() string { return h.url }

// Close stops serving.
func (h *HTTPServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return h.srv.Shutdown(ctx)
}
