"""Creates an ECS cluster, a service and two tasks in moto_server.

Usage: ecs_setup.py ENDPOINT CLUSTER SERVICE
Prints one JSON object: {"cluster": ARN, "service": ARN, "tasks": [ARN, ...]}.
Used by tests/integration/it_ecs.c, which drives dtq's own ECS client against
what this creates through boto3 (dtq implements no Create* calls). The tasks
run on an EC2 container instance: moto 5.2 fails RunTask for FARGATE tasks.
"""
import json
import sys

import boto3
from moto.ec2 import utils as ec2_utils

endpoint, cluster, service = sys.argv[1:4]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
ec2 = boto3.resource("ec2", **kw)
ecs = boto3.client("ecs", **kw)
c = ecs.create_cluster(clusterName=cluster)["cluster"]["clusterArn"]
instance = ec2.create_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)[0]
ecs.register_container_instance(
    cluster=cluster,
    instanceIdentityDocument=json.dumps(ec2_utils.generate_instance_identity_document(instance)))
ecs.register_task_definition(
    family=service,
    containerDefinitions=[{"name": "worker", "image": "dtq:test", "cpu": 10, "memory": 64}])
s = ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=service,
                       desiredCount=1)["service"]["serviceArn"]
tasks = ecs.run_task(cluster=cluster, taskDefinition=service, count=2,
                     startedBy="dtq-test")["tasks"]
print(json.dumps({"cluster": c, "service": s, "tasks": [t["taskArn"] for t in tasks]}))
