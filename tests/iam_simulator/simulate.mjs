// Reads a JSON list of requests on stdin, each {id, principal, action, resource, accountId, context, policies},
// and prints, for each, iam-simulate's verdict: Allowed, ImplicitlyDenied or ExplicitlyDenied (or the errors
// it found in the input: an unknown action, a context key the action does not take, a malformed policy).
import { runSimulation } from '@cloud-copilot/iam-simulate'

let input = ''
for await (const chunk of process.stdin) input += chunk
const results = []
for (const request of JSON.parse(input)) {
  const answer = await runSimulation({
    identityPolicies: request.policies.map((policy, index) => ({ name: `policy${index}`, policy })),
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    request: {
      principal: request.principal,
      action: request.action,
      resource: { resource: request.resource, accountId: request.accountId },
      contextVariables: request.context,
    },
  }, {})
  results.push({ id: request.id, result: answer.overallResult ?? null, errors: answer.errors ?? null })
}
process.stdout.write(JSON.stringify(results))
