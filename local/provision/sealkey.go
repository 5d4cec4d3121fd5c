package provision

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/sessionha/sessionha/infra/topology"
)

// KMS is the part of the KMS API the provisioner calls.
type KMS interface {
	DescribeKey(context.Context, *kms.DescribeKeyInput, ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
	CreateKey(context.Context, *kms.CreateKeyInput, ...func(*kms.Options)) (*kms.CreateKeyOutput, error)
	CreateAlias(context.Context, *kms.CreateAliasInput, ...func(*kms.Options)) (*kms.CreateAliasOutput, error)
}

// SealKey makes the site's seal key (t.SealKey: a symmetric KMS key under its alias)
// unless the alias already names one, and returns the key's ARN.
func SealKey(ctx context.Context, t topology.Topology, k KMS) (string, error) {
	alias := t.SealKey.Alias
	got, err := k.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(alias)})
	var notFound *kmstypes.NotFoundException
	switch {
	case err == nil:
		return aws.ToString(got.KeyMetadata.Arn), nil
	case !errors.As(err, &notFound):
		return "", fmt.Errorf("provision seal key %s: %w", alias, err)
	}
	made, err := k.CreateKey(ctx, &kms.CreateKeyInput{
		Description: aws.String("sessionha " + t.Site.Name + ": wraps the data keys that seal session attribute values"),
	})
	if err != nil {
		return "", fmt.Errorf("provision seal key %s: %w", alias, err)
	}
	if _, err := k.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: made.KeyMetadata.KeyId}); err != nil {
		return "", fmt.Errorf("provision seal key %s: alias: %w", alias, err)
	}
	return aws.ToString(made.KeyMetadata.Arn), nil
}
