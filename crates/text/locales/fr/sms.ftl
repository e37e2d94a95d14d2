# Réponses et avis SMS-TAN, français (banque en Afrique de l'Ouest et centrale). Chaque message doit
# tenir dans un SMS GSM-7 de 160 caractères : é, è, à, ù, É sont permis ; ê, â, î, ô, û, ç, œ, ë,
# À ne sont PAS dans GSM-7 et sont interdits ici (le test du catalogue le vérifie). Ne traduisez
# pas ce que le client retape ou qu'un outil lit : PAY, PAYG, PAYC, OK, REG, BAL, STMT, LIMIT,
# DIALBACK, HIGH, LATER, PASSWORD, DISPUTE, LANGUE, HELP, REF, SUM, « BANK ROW n TAN x », « ROW n TAN x ».
#
# Glossaire (mêmes mots partout) :
#   envelope   enveloppe (la feuille de codes TAN remise par la banque)
#   row        ligne ; « cross out » = barrer la ligne
#   TAN        code TAN (3 chiffres d'une ligne)
#   SUM        SUM (somme de contrôle de 6 chiffres)
#   balance    solde
#   statement  relevé
#   payee      bénéficiaire ; payer : payeur
#   fee        frais
#   agent      agent
#   callback   confirmation de la banque

sms-empty = Message vide. Envoyez HELP pour voir les messages possibles.
sms-too-long = Message trop long. Une instruction par SMS. Envoyez HELP pour la liste.
sms-bad-sign = Le signe { $sign } de votre message est illisible. Utilisez lettres, chiffres, espaces, et * entre les parties.
sms-bad-sign-hidden = Votre message contient un signe illisible. Utilisez lettres, chiffres, espaces, et * entre les parties.
sms-unknown-keyword = Message inconnu. Commencez par PAY, PAYG, PAYC, OK, REG, BAL, STMT, LIMIT, DIALBACK, HIGH, LATER, PASSWORD, DISPUTE, LANGUE ou HELP.
sms-missing-part = Il manque dans votre message : { $field }. Exemple : { $example }
sms-unreadable-part = Lecture impossible : { $field }. Exemple : { $example }
sms-too-many-parts = Trop de parties dans votre message. Exemple : { $example }
sms-ambiguous = Impossible de distinguer les parties de votre message. Mettez * entre elles, ex. PAY*enveloppe*bénéficiaire*montant*ligne*SUM
sms-bad-part = Lecture impossible : { $field }.
sms-bad-phone = Numéro de téléphone illisible.
sms-bad-date-time = Cette date ou cette heure n'existe pas. Exemple : LATER 2026-12-01 09:00 PAY ...
sms-too-many-decimals = Montant illisible : { $currency } a { $decimals } décimales. Aucune opération effectuée.
sms-example-pay = PAY enveloppe bénéficiaire montant ligne SUM
sms-example-payg = PAYG enveloppe ligne bénéf-codé montant+col2 code-taille SUM
sms-example-payc = PAYC enveloppe ligne bénéf-codé montant+col2 code-taille SUM
sms-example-reg = REG nouvelle-codée 26399912345 5 SUM

sms-field-payer = numéro d'enveloppe (11 chiffres) ou de paiement (12)
sms-field-new-envelope = numéro de la nouvelle enveloppe (11 chiffres)
sms-field-payee = numéro de compte du bénéficiaire (12 chiffres)
sms-field-coded-payee = bénéficiaire codé (2 chiffres puis 10 codes de la grille)
sms-field-amount = montant (ex. 1500 ou 1500.50)
sms-field-coded-amount = montant plus colonne 2
sms-field-currency = devise (ex. XOF)
sms-field-row = numéro de ligne (1 à 50)
sms-field-tan = code TAN (3 chiffres)
sms-field-checksum = SUM (6 chiffres)
sms-field-size-code = code de grandeur du montant (3 chiffres)
sms-field-reference = référence du paiement (8 chiffres)
sms-field-limit-kind = type de plafond DAY, WEEK, EACH ou TO
sms-field-switch = ON ou OFF
sms-field-password = mot de passe (8 à 32 lettres ou chiffres)
sms-field-date = date (AAAA-MM-JJ)
sms-field-time = heure (HH:MM)
sms-field-scheduled-payment = paiement (PAY, PAYG ou PAYC ...)
sms-field-language = langue (EN, SW ou FR)

sms-refused-not-authenticated = Refusé : numéro d'enveloppe, ligne ou code erroné. Aucune opération effectuée.
sms-refused-row-used = La ligne { $row } a déjà servi et ne peut pas resservir. Aucune opération effectuée. Utilisez une ligne non barrée.
sms-refused-row-out-of-range = Votre enveloppe n'a pas de ligne { $row }. Aucune opération effectuée.
sms-refused-envelope-locked = Enveloppe bloquée après trop de codes erronés. Passez chez un agent avec votre pièce d'identité pour la débloquer.
sms-refused-envelope-not-active = Cette enveloppe n'est pas en service. Utilisez votre enveloppe actuelle, ou enregistrez celle-ci avec REG.
sms-refused-rows-exhausted = Il reste trop peu de lignes sur votre enveloppe. Prenez-en une nouvelle et envoyez REG nouvelle-codée ancienne ligne SUM avec la dernière ligne.
sms-refused-phone-not-bound = Ce compte n'accepte que les instructions de ses téléphones enregistrés. Aucune opération effectuée.
sms-refused-pay-number-required = Ce compte paie uniquement avec son numéro de paiement. Envoyez-le à la place du numéro d'enveloppe.
sms-refused-last-row-reserved = C'est la dernière ligne libre de votre enveloppe, gardée pour enregistrer la prochaine (REG). Aucune opération effectuée ; la ligne reste à vous.
sms-refused-content-mismatch = Refusé : le SUM (6 chiffres) ne correspond pas à ce message. Si vous l'avez tapé tel quel, il a été modifié en route. Rien n'a été payé ni changé.
sms-refused-codes-do-not-match = Refusé : bénéficiaire codé, montant ou codes différents de votre ligne d'enveloppe. Aucun paiement effectué.
sms-refused-unknown-payee = Aucun compte ne porte ce numéro de bénéficiaire. Vérifiez-le. Aucun paiement effectué.
sms-refused-same-payer-and-payee = Vous ne pouvez pas payer votre propre compte. Aucun paiement effectué.
sms-refused-zero-amount = Le montant doit dépasser zéro. Aucun paiement effectué.
sms-refused-amount-too-large = Montant trop élevé pour un paiement codé (max 999999999.99). Fractionnez-le. Aucun paiement effectué.
sms-refused-per-payment-limit = Refusé : au-dessus de votre plafond par paiement. Modifiez-le avec LIMIT ... EACH. Aucun paiement effectué.
sms-refused-daily-limit = Refusé : au-dessus de votre plafond journalier. Modifiez-le avec LIMIT ... DAY. Aucun paiement effectué.
sms-refused-weekly-limit = Refusé : au-dessus de votre plafond hebdomadaire. Modifiez-le avec LIMIT ... WEEK. Aucun paiement effectué.
sms-refused-payee-limit = Refusé : au-dessus de votre plafond journalier pour ce bénéficiaire. Modifiez-le avec LIMIT ... TO. Aucun paiement effectué.
sms-refused-insufficient-funds = Refusé : solde insuffisant pour le montant et les frais. Aucun paiement effectué.
sms-refused-currency-not-accepted = Refusé : payez dans la devise de votre compte ou celle du bénéficiaire. Aucun paiement effectué.
sms-refused-soft-currency = Refusé : la devise de ce compte n'est pas convertible. Aucun paiement effectué.
sms-refused-no-pending-callback = Aucun paiement n'attend cette ligne de la banque et ce TAN. Aucun paiement effectué.
sms-refused-callback-expired = Trop tard : le paiement a attendu { $minutes } minutes et a été annulé. Renvoyez-le avec une nouvelle ligne.
sms-refused-envelope-not-registrable = Impossible d'enregistrer cette nouvelle enveloppe : inconnue, déjà en service ou bloquée.
sms-refused-bad-schedule-time = L'heure du paiement doit se situer dans le futur, à moins d'un an. Rien n'a été programmé.
sms-refused-bad-setting = Ce réglage n'est pas possible. Rien n'a été changé.
sms-refused-account-not-active = Ce compte est fermé ou bloqué. Veuillez contacter l'opérateur.
sms-refused-unknown-reference = Aucun paiement de votre compte ne porte cette référence.
sms-refused-confirmation-mismatch = Votre OK ne correspond pas au paiement lu par la banque. Aucun paiement effectué. Renvoyez le paiement avec de nouvelles lignes.
sms-refused-callback-required = Ce montant exige une confirmation de la banque : payez par SMS avec PAYC depuis votre téléphone. Aucun paiement effectué.
sms-refused-printed-recipe-limit = Refusé : trop élevé pour les codes imprimés de cette enveloppe. Payez moins ou demandez une nouvelle enveloppe à votre agent. Aucun paiement effectué.
sms-locked-now = Enveloppe bloquée après { $failures } codes erronés ; passez chez un agent.
sms-cross-out = Barrez la ligne { $row }.

sms-help = PAY env bénéf montant ligne sum | PAYG/PAYC env ligne bénéf-codé montant+ajout taille sum | BAL/STMT env ligne TAN | REG. Aide : votre agent
sms-paid-low = PAYÉ { $instruction } REF { $reference } FRAIS { $fee }
sms-paid-grid = PAYÉ { $instruction } { $proof } REF { $reference }
sms-paid-plain = PAYÉ { $amount } à { $payee } REF { $reference }. Plus de ligne libre pour une preuve codée : enregistrez une nouvelle enveloppe.
sms-paid-scheduled = PAYÉ { $amount } à { $payee } comme programmé REF { $reference } { $proof }
sms-paid-at-terminal = PAYÉ { $amount } à { $payee } sur un terminal REF { $reference } { $proof }
sms-paid-on-web = PAYÉ { $amount } à { $payee } sur la page web REF { $reference }
sms-callback = VÉRIFIEZ { $instruction } { $proof } SUM { $sum }. Exact ? OK { $payer } { $row } { $tan } LIGNE SUM
sms-received-coded = CRÉDIT { $amount } DE { $payer } ROW { $row } TAN { $tan } REF { $reference }. Retirez l'ajout et le moins de la ligne.
sms-received-plain = CRÉDIT { $amount } DE { $payer } REF { $reference }.
sms-received-plain-rows-out = CRÉDIT { $amount } DE { $payer } REF { $reference }. Prenez une nouvelle enveloppe et enregistrez-la pour les avis codés.
sms-scheduled = PROGRAMMÉ { $amount } à { $payee } le { $due } REF { $reference } { $proof }
sms-balance = Votre solde est de { $amount }
sms-registered = L'enveloppe { $new } est maintenant liée à votre compte. L'enveloppe { $old } est fermée. { $proof }
sms-setting-changed = FAIT : { $what }. { $proof }
sms-dispute-filed = Réclamation sur le paiement { $reference } enregistrée. L'opérateur décide ; le bénéficiaire garde l'argent d'ici là. Des frais sont possibles. { $proof }

sms-done-daily-limit = plafond journalier { $amount }
sms-done-daily-limit-removed = plafond journalier supprimé
sms-done-weekly-limit = plafond hebdomadaire { $amount }
sms-done-weekly-limit-removed = plafond hebdomadaire supprimé
sms-done-payment-limit = plafond par paiement { $amount }
sms-done-payment-limit-removed = plafond par paiement supprimé
sms-done-payee-limit = plafond journalier vers { $payee } { $amount }
sms-done-payee-limit-removed = plafond journalier vers { $payee } supprimé
sms-done-callback-from = confirmation de la banque dès { $amount }
sms-done-callback-always = confirmation de la banque pour chaque paiement
sms-done-callback-threshold = confirmation de la banque au-dessus de votre seuil seulement
sms-done-web-password = mot de passe web défini
sms-done-language = langue { $language }

sms-statement-head = RELEVÉ
sms-statement-paid-to = { $date } VERS { $counterparty } { $amount }{ $fee } ref { $reference };
sms-statement-received-from = { $date } DE { $counterparty } { $amount }{ $fee } ref { $reference };
sms-statement-fee = { " " }frais { $fee }
sms-statement-balance = SOLDE { $amount }
sms-statement-cash = espèces
sms-statement-exchange = change

sms-purse-statement-head = SOLDE PORTE-MONNAIE { $amount }
sms-purse-statement-in = { $date } DE { $counterparty } { $amount }
sms-purse-statement-out = { $date } VERS { $counterparty } { $amount }
sms-purse-statement-empty = aucun paiement pour le moment
sms-purse-statement-operator = opérateur
