export { BaseCommand } from './base-command.js';
export { Target, type TargetFlags } from './target.js';
export { complete, withDynamic, formatCompletion, Directive, DYNAMIC, type Completion, type CompletionCommand, type CompletionTopic, type Candidate, type DynamicNeed } from './completion.js';
