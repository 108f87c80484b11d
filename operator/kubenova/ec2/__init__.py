"""The EC2-compatible API: tools written for Amazon EC2 (boto3, the AWS CLI) manage Kubenova
Instances unchanged.

``kubenova-ec2-api`` speaks EC2's Query API, version 2016-11-15, as botocore's service model
describes it (:mod:`protocol`, :mod:`responses`), checks AWS Signature Version 4 against access
keys kept as Secrets in their namespace (:mod:`auth`, :mod:`keys`), and acts on Instances,
Flavors and Images through the kube-apiserver (:mod:`actions_catalog`,
:mod:`actions_instances`). See docs/ec2.md.
"""
