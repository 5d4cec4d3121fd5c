package kms_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	kmssdk "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/sessionha/sessionha/local/kms"
)

// client is the SDK's own KMS client against a stand-in of region.
func client(t *testing.T, region string) (*kmssdk.Client, *kms.Server) {
	t.Helper()
	srv := kms.New(region)
	h, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return kmssdk.New(kmssdk.Options{Region: region, BaseEndpoint: aws.String(h.URL()),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}), srv
}

// TestStandInWithTheSDK drives the stand-in with the SDK's client: the calls sessionha
// makes, and the refusals it relies on.
func TestStandInWithTheSDK(t *testing.T) {
	ctx := context.Background()
	c, srv := client(t, "eu-west-1")
	made, err := c.CreateKey(ctx, &kmssdk.CreateKeyInput{Description: aws.String("seal")})
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(made.KeyMetadata.Arn)
	if !strings.HasPrefix(arn, "arn:aws:kms:eu-west-1:"+kms.Account+":key/") || made.KeyMetadata.KeyState != types.KeyStateEnabled {
		t.Fatalf("CreateKey: %s %s", arn, made.KeyMetadata.KeyState)
	}
	if _, err := c.CreateAlias(ctx, &kmssdk.CreateAliasInput{AliasName: aws.String("alias/seal"), TargetKeyId: made.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	var exists *types.AlreadyExistsException
	if _, err := c.CreateAlias(ctx, &kmssdk.CreateAliasInput{AliasName: aws.String("alias/seal"), TargetKeyId: made.KeyMetadata.KeyId}); !errors.As(err, &exists) {
		t.Errorf("second CreateAlias: %v, want AlreadyExistsException", err)
	}
	for _, ref := range []string{"alias/seal", arn, aws.ToString(made.KeyMetadata.KeyId), "arn:aws:kms:eu-west-1:" + kms.Account + ":alias/seal"} {
		d, err := c.DescribeKey(ctx, &kmssdk.DescribeKeyInput{KeyId: aws.String(ref)})
		if err != nil || aws.ToString(d.KeyMetadata.Arn) != arn {
			t.Errorf("DescribeKey(%s) = %v, %v", ref, d, err)
		}
	}
	var notFound *types.NotFoundException
	if _, err := c.DescribeKey(ctx, &kmssdk.DescribeKeyInput{KeyId: aws.String("alias/none")}); !errors.As(err, &notFound) {
		t.Errorf("DescribeKey of an unknown alias: %v, want NotFoundException", err)
	}

	ec := map[string]string{"sessionha-purpose": "seal", "sessionha-key-id": "k1"}
	dk, err := c.GenerateDataKey(ctx, &kmssdk.GenerateDataKeyInput{KeyId: aws.String("alias/seal"), KeySpec: types.DataKeySpecAes256, EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	if len(dk.Plaintext) != 32 || bytes.Contains(dk.CiphertextBlob, dk.Plaintext) || aws.ToString(dk.KeyId) != arn {
		t.Fatalf("GenerateDataKey: %d bytes, key %s", len(dk.Plaintext), aws.ToString(dk.KeyId))
	}
	got, err := c.Decrypt(ctx, &kmssdk.DecryptInput{CiphertextBlob: dk.CiphertextBlob, KeyId: aws.String(arn), EncryptionContext: ec})
	if err != nil || !bytes.Equal(got.Plaintext, dk.Plaintext) {
		t.Fatalf("Decrypt: %v", err)
	}

	var invalid *types.InvalidCiphertextException
	wrongContext := map[string]string{"sessionha-purpose": "seal", "sessionha-key-id": "k2"}
	if _, err := c.Decrypt(ctx, &kmssdk.DecryptInput{CiphertextBlob: dk.CiphertextBlob, EncryptionContext: wrongContext}); !errors.As(err, &invalid) {
		t.Errorf("Decrypt with another context: %v, want InvalidCiphertextException", err)
	}
	tampered := bytes.Clone(dk.CiphertextBlob)
	tampered[len(tampered)-1] ^= 1
	if _, err := c.Decrypt(ctx, &kmssdk.DecryptInput{CiphertextBlob: tampered, EncryptionContext: ec}); !errors.As(err, &invalid) {
		t.Errorf("Decrypt of a changed blob: %v, want InvalidCiphertextException", err)
	}
	other, err := c.CreateKey(ctx, &kmssdk.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	var incorrect *types.IncorrectKeyException
	if _, err := c.Decrypt(ctx, &kmssdk.DecryptInput{CiphertextBlob: dk.CiphertextBlob, KeyId: other.KeyMetadata.Arn, EncryptionContext: ec}); !errors.As(err, &incorrect) {
		t.Errorf("Decrypt naming another key: %v, want IncorrectKeyException", err)
	}

	// Encrypt under another region's key: its blob opens there, not here.
	us, _ := client(t, "us-east-1")
	usKey, err := us.CreateKey(ctx, &kmssdk.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := us.Encrypt(ctx, &kmssdk.EncryptInput{KeyId: usKey.KeyMetadata.Arn, Plaintext: dk.Plaintext, EncryptionContext: ec})
	if err != nil {
		t.Fatal(err)
	}
	if back, err := us.Decrypt(ctx, &kmssdk.DecryptInput{CiphertextBlob: enc.CiphertextBlob, KeyId: usKey.KeyMetadata.Arn, EncryptionContext: ec}); err != nil || !bytes.Equal(back.Plaintext, dk.Plaintext) {
		t.Errorf("Decrypt in us-east-1: %v", err)
	}
	if _, err := c.Decrypt(ctx, &kmssdk.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec}); !errors.As(err, &invalid) {
		t.Errorf("a us-east-1 blob in eu-west-1: %v, want InvalidCiphertextException", err)
	}

	_, err = c.ListKeys(ctx, &kmssdk.ListKeysInput{})
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "UnsupportedOperationException" {
		t.Errorf("an operation it does not serve: %v", err)
	}
	if srv.Requests() < 10 {
		t.Errorf("%d requests counted", srv.Requests())
	}
}
