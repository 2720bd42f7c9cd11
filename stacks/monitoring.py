"""Monitoring: alarms on dead letters, a stuck queue and function errors (to an SNS topic if asked)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from constructs import Construct


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        queue: sqs.IQueue,
        dead_letters: sqs.IQueue,
        functions: dict[str, lambda_.Function],
        alarm_email: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.alarms: list[cw.Alarm] = [
            dead_letters.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1)
            ).create_alarm(
                self,
                "DeadLetters",
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                alarm_description="Ingest messages failed maxReceiveCount times: inspect the DLQ, fix, then redrive.",
            ),
            queue.metric_approximate_age_of_oldest_message(period=Duration.minutes(5)).create_alarm(
                self,
                "IngestBacklog",
                threshold=900,
                evaluation_periods=3,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                alarm_description="Uploads wait over 15 minutes to be indexed.",
            ),
        ]
        for name, function in functions.items():
            self.alarms.append(
                function.metric_errors(period=Duration.minutes(5)).create_alarm(
                    self,
                    f"{name}Errors",
                    threshold=1,
                    evaluation_periods=1,
                    comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                    treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                    alarm_description=f"The {name} function failed (see its log group).",
                )
            )
        self.topic: sns.Topic | None = None
        if alarm_email:
            self.topic = sns.Topic(self, "Alarms", enforce_ssl=True, master_key=None)
            self.topic.add_subscription(subs.EmailSubscription(alarm_email))
            for alarm in self.alarms:
                alarm.add_alarm_action(actions.SnsAction(self.topic))
