export { BaseCommand } from './base-command.js';
export { Target, type TargetFlags } from './target.js';
