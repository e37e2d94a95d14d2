# Écrans USSD, français. Un écran fait au plus 182 caractères avec les valeurs les plus longues.
ussd-main = offpay
    1 Solde du porte-monnaie
    2 Relevé du porte-monnaie
    3 Solde du compte SMS
    4 Relevé du compte SMS
    5 Langue
    6 Aide
ussd-no-purse = Aucun porte-monnaie n'est inscrit pour ce téléphone. Un agent peut l'inscrire.
ussd-purse-balance = Solde du porte-monnaie { $amount } à votre dernière synchronisation le { $synced }. Les paiements suivants apparaitront après la prochaine.
ussd-purse-balance-never = Solde du porte-monnaie { $amount }. Votre porte-monnaie n'a pas encore été synchronisé.
ussd-purse-blocked = Ce porte-monnaie est bloqué. Veuillez voir un agent.
ussd-purse-statement = Relevé du porte-monnaie :
    { $lines }
ussd-purse-statement-empty = Votre relevé est vide.
ussd-line-in = { $date } entrée { $amount }
ussd-line-out = { $date } sortie { $amount }
ussd-enter-envelope = Entrez le numéro imprimé sur votre enveloppe TAN (11 chiffres) :
ussd-bad-envelope = Un numéro d'enveloppe a 11 chiffres. Veuillez recomposer.
ussd-not-bound = Ce téléphone n'est pas inscrit pour ce compte. Utilisez votre téléphone inscrit, ou voyez un agent.
ussd-account-held = Ce compte est bloqué pendant que la banque vérifie ses données. Rien n'est possible ici pour le moment. Voyez un agent.
ussd-choose-language = Choisissez votre langue :
    1 English
    2 Kiswahili
    3 Francais
ussd-language-set = Vos messages sont maintenant en { $language }.
ussd-help = 1-2 : porte-monnaie à la dernière synchro. 3-4 : compte SMS. 5 : langue. Les paiements se font par SMS avec votre enveloppe TAN. Envoyez HELP par SMS.
ussd-wrong-choice = Ce choix n'est pas au menu. Veuillez recomposer.
ussd-session-ended = Votre session est terminée. Veuillez recomposer.
ussd-unavailable = Le service est occupé. Veuillez réessayer dans quelques minutes.
